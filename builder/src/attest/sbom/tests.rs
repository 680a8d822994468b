//! The scanners over hand-built layers: what each finds, whiteouts and opaque directories
//! hiding what lower layers had, and the SPDX document's bytes (golden file).

use std::io::Cursor;

use super::*;

/// One layer tar; `None` content makes a directory, a `(path, Some(bytes), mode)` a file.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }
    fn file(mut self, path: &str, body: &[u8], mode: u32) -> Layer {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(tar::EntryType::Regular);
        self.0
            .append_data(&mut h, path, body)
            .expect("append to an in-memory tar");
        self
    }
    fn text(self, path: &str, body: &str) -> Layer {
        self.file(path, body.as_bytes(), 0o644)
    }
    fn hardlink(mut self, path: &str, target: &str) -> Layer {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Link);
        self.0
            .append_link(&mut h, path, target)
            .expect("append to an in-memory tar");
        self
    }
    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().expect("finish an in-memory tar")
    }
}

fn tree_of(layers: Vec<Vec<u8>>) -> Tree {
    let mut t = Tree::default();
    for l in layers {
        t.add_layer(Cursor::new(l)).expect("read test layer");
    }
    t
}

const STATUS: &str = "Package: base-files\nStatus: install ok installed\nArchitecture: amd64\n\
Version: 12.4+deb12u5\nMaintainer: Santiago Vila <sanvila@debian.org>\n\n\
Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\n\
Version: 2.36-9+deb12u4\nMaintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>\n\n\
Package: curl\nStatus: install ok installed\nArchitecture: amd64\nVersion: 7.88.1-10\n";

fn debian_like() -> Vec<Vec<u8>> {
    let base = Layer::new()
        .text("usr/lib/os-release", "ID=debian\nVERSION_ID=\"12\"\n")
        .text("var/lib/dpkg/status", STATUS)
        .text(
            "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\nLicense: MIT\nAuthor: Benjamin Peterson\n",
        )
        .text(
            "usr/lib/python3/dist-packages/gone-1.0.dist-info/METADATA",
            "Name: gone\nVersion: 1.0\n",
        )
        .text(
            "app/node_modules/old/package.json",
            r#"{"name":"old","version":"0.0.1"}"#,
        )
        .bytes();
    // `apt-get remove curl` rewrites the status; pip uninstall whites out the dist-info;
    // a fresh `npm ci` makes node_modules opaque.
    let upper = Layer::new()
        .text("var/lib/dpkg/status", &STATUS.replace(
            "\n\nPackage: curl\nStatus: install ok installed\n",
            "\n\nPackage: curl\nStatus: deinstall ok config-files\n",
        ))
        .text("usr/lib/python3/dist-packages/.wh.gone-1.0.dist-info", "")
        .text("app/node_modules/.wh..wh..opq", "")
        .text(
            "app/node_modules/@types/node/package.json",
            r#"{"name":"@types/node","version":"20.11.5","license":"MIT"}"#,
        )
        .text(
            "app/package-lock.json",
            r#"{"lockfileVersion":3,"packages":{"":{"name":"app"},"node_modules/@types/node":{"version":"20.11.5"},"node_modules/undici-types":{"version":"5.26.5","license":"MIT"}}}"#,
        )
        .bytes();
    vec![base, upper]
}

#[test]
fn whiteouts_and_rewrites_hide_lower_packages() {
    let tree = tree_of(debian_like());
    let names: Vec<String> = packages(&tree)
        .iter()
        .map(|p| format!("{:?} {}", p.ecosystem, p.name))
        .collect();
    assert_eq!(
        names,
        [
            "Deb base-files",
            "Deb libc6",
            "Python six",
            "Npm @types/node",
            "Npm undici-types",
        ]
    );
}

#[test]
fn a_whiteout_hides_only_lower_layers() {
    // The same layer deletes and re-creates the directory: the new file stays.
    let lower = Layer::new()
        .text("var/lib/dpkg/status", "Package: a\nVersion: 1\n")
        .bytes();
    let upper = Layer::new()
        .text("var/lib/dpkg/.wh.status", "")
        .text("var/lib/.wh..wh..opq", "")
        .text("var/lib/dpkg/status", "Package: b\nVersion: 2\n")
        .bytes();
    let got: Vec<String> = packages(&tree_of(vec![lower, upper]))
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(got, ["b"]);
    // A file replacing a directory hides everything under it.
    let lower = Layer::new()
        .text("var/lib/dpkg/status", "Package: a\nVersion: 1\n")
        .bytes();
    let upper = Layer::new().text("var/lib", "not a dir").bytes();
    assert!(packages(&tree_of(vec![lower, upper])).is_empty());
}

#[test]
fn alpine_with_busybox_hardlinks() {
    let mut bin = b"\x7fELF".to_vec();
    bin.resize(5000, 0);
    bin.extend_from_slice(b"BusyBox v1.36.1 (2023-11-07 18:53:09 UTC) multi-call binary");
    let layer = Layer::new()
        .text(
            "etc/os-release",
            "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n",
        )
        .text(
            "lib/apk/db/installed",
            "P:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nL:MIT\no:musl\n\n",
        )
        .file("bin/busybox", &bin, 0o755)
        // Not called busybox: not classified, though it is the same file.
        .hardlink("bin/sh", "bin/busybox")
        .bytes();
    let p = packages(&tree_of(vec![layer]));
    let purls: Vec<&str> = p.iter().map(|p| p.purl.as_str()).collect();
    assert_eq!(
        purls,
        [
            "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&upstream=musl&distro=alpine-3.19.1",
            "pkg:generic/busybox@1.36.1",
        ]
    );
}

#[test]
fn oversized_databases_are_skipped_and_reported() {
    let mut t = Tree::default();
    let big = vec![b'x'; (walk::MAX_FILE_BYTES + 1) as usize];
    t.add_layer(Cursor::new(
        Layer::new()
            .file("var/lib/dpkg/status", &big, 0o644)
            .bytes(),
    ))
    .unwrap();
    assert!(t.files.is_empty());
    assert_eq!(t.skipped, ["var/lib/dpkg/status"]);
}

#[test]
fn spdx_document_golden() {
    let tree = tree_of(debian_like());
    let info = DocumentInfo {
        name: "localhost:5000/app:v1",
        created: "2024-01-02T03:04:05Z",
        creator: "Tool: rbuild-test",
    };
    let doc = spdx_document(&packages(&tree), &info);
    let again = spdx_document(&packages(&tree_of(debian_like())), &info);
    assert_eq!(doc, again, "the same image gives the same document");
    insta::assert_snapshot!(serde_json::to_string_pretty(&doc).unwrap());
}

/// A real Go binary, built here, is found with its module and the standard library.
#[test]
fn go_binary_build_info() {
    let Ok(out) = std::process::Command::new("go").arg("version").output() else {
        eprintln!("skipped: no `go` on PATH");
        return;
    };
    let go_version = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("go.mod"),
        "module example.com/hello\n\ngo 1.18\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("main.go"),
        "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hi\") }\n",
    )
    .unwrap();
    let status = std::process::Command::new("go")
        .args(["build", "-trimpath", "-buildvcs=false", "-o", "hello", "."])
        .current_dir(dir.path())
        .env("GOCACHE", dir.path().join("cache"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .status()
        .unwrap();
    assert!(status.success(), "go build");
    let bin = std::fs::read(dir.path().join("hello")).unwrap();
    let layer = Layer::new()
        .file("usr/local/bin/hello", &bin, 0o755)
        .bytes();
    let p = packages(&tree_of(vec![layer]));
    let got: Vec<(String, String, String)> = p
        .into_iter()
        .map(|p| (p.name, p.version, p.location))
        .collect();
    assert_eq!(
        got,
        [
            (
                "example.com/hello".into(),
                "(devel)".into(),
                "usr/local/bin/hello".into()
            ),
            ("stdlib".into(), go_version, "usr/local/bin/hello".into()),
        ]
    );
}
