//! `ADD <URL>` and `ADD <git URL>` against real servers on 127.0.0.1 (Python's `http.server`,
//! `git daemon`): BuildKit's names, modes and mtimes, `--checksum`, `--chown`/`--chmod`,
//! re-validation of a cached download, git refs/subdirs/`--keep-git-dir`, keys that follow
//! the content or commit, and credentials that never reach output or the store.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rbuild_tests::build::{build, write_tree};
use rbuild_tests::progress::op_steps;
use rbuild_tests::{have_tool, scratch};

/// A server process killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16) {
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server on port {port} did not start");
}

/// `python3 -m http.server` serving `dir` (it sends Last-Modified and answers
/// If-Modified-Since with 304); its request log goes to `log`.
pub(crate) fn http_server(dir: &Path, log: &Path) -> Server {
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    wait_for(port);
    Server { child, port }
}

pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `git daemon` exporting every repository under `base`. `git-daemon` is started directly:
/// `git daemon` would fork it, and killing `git` would leave the daemon running.
pub(crate) fn git_daemon(base: &Path) -> Server {
    let port = free_port();
    let exec_path = git(base, &["--exec-path"]);
    let child = Command::new(Path::new(&exec_path).join("git-daemon"))
        .arg("--reuseaddr")
        .arg("--export-all")
        .arg("--listen=127.0.0.1")
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", base.display()))
        .arg(base)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(port);
    Server { child, port }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn build_fs(dir: &Path, ctx: &Path, name: &str) -> (PathBuf, rbuild_tests::Run) {
    let fs = dir.join(name);
    let dest = format!("type=local,dest={}", fs.display());
    let r = build(&dir.join("store"), ctx, &["--output", dest.as_str()]).success();
    (fs, r)
}

fn set_mtime(p: &Path, secs: i64) {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(secs as u64);
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn add_url_follows_buildkits_names_modes_and_mtimes() {
    if !have_tool("python3") || !have_tool("tar") {
        return;
    }
    let dir = scratch();
    let srv = dir.path().join("srv");
    write_tree(&srv, &[("hello.txt", "hello\n"), ("t/x", "x\n")]);
    set_mtime(&srv.join("hello.txt"), 1_577_934_245);
    let tar = Command::new("tar")
        .args(["czf", "arch.tar.gz", "-C", "t", "x"])
        .current_dir(&srv)
        .status()
        .unwrap();
    assert!(tar.success());
    let server = http_server(&srv, &dir.path().join("http.log"));
    let base = format!("http://127.0.0.1:{}", server.port);
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[
            (
                "etc/passwd",
                "root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
            ),
            ("etc/group", "root:x:0:\napp:x:1000:\n"),
            (
                "Dockerfile",
                &format!(
                    "FROM scratch\nCOPY etc/ /etc/\n\
                     ADD {base}/hello.txt /a/\n\
                     ADD {base}/hello.txt /b\n\
                     ADD {base}/arch.tar.gz /c/\n\
                     ADD {base}/t/ /d/\n\
                     ADD --chown=app --chmod=755 {base}/hello.txt?x=1 /f/\n\
                     ADD {base}/hello.txt {base}/t/x /g/\n"
                ),
            ),
        ],
    );
    let (fs, _) = build_fs(dir.path(), &ctx, "fs");
    let hello = fs.join("a/hello.txt");
    assert_eq!(std::fs::read_to_string(&hello).unwrap(), "hello\n");
    assert_eq!(mode(&hello), 0o600);
    assert_eq!(std::fs::metadata(&hello).unwrap().mtime(), 1_577_934_245);
    assert_eq!(mode(&fs.join("b")), 0o600);
    // A remote archive is not unpacked.
    assert!(fs.join("c/arch.tar.gz").is_file());
    assert!(!fs.join("c/x").exists());
    // The name is the last segment of the path (a directory listing here: no Last-Modified).
    assert!(fs.join("d/t").is_file());
    assert_eq!(std::fs::metadata(fs.join("d/t")).unwrap().mtime(), 0);
    let f = fs.join("f/hello.txt");
    assert_eq!(mode(&f), 0o755);
    let md = std::fs::metadata(&f).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1000));
    assert!(fs.join("g/hello.txt").is_file() && fs.join("g/x").is_file());
}

#[test]
fn add_url_checksum_is_verified_and_a_mismatch_names_the_line_and_url() {
    if !have_tool("python3") {
        return;
    }
    let dir = scratch();
    let srv = dir.path().join("srv");
    write_tree(&srv, &[("hello.txt", "hello\n")]);
    let server = http_server(&srv, &dir.path().join("http.log"));
    let url = format!("http://127.0.0.1:{}/hello.txt", server.port);
    let good = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    let bad = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            &format!("FROM scratch\nADD --checksum={good} {url} /x\n"),
        )],
    );
    let (fs, _) = build_fs(dir.path(), &ctx, "fs");
    assert_eq!(std::fs::read_to_string(fs.join("x")).unwrap(), "hello\n");

    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            &format!("FROM scratch\n\nADD --checksum={bad} {url} /x\n"),
        )],
    );
    let r = build(&dir.path().join("store2"), &ctx, &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("Dockerfile:3"), "{}", r.stderr);
    assert!(r.stderr.contains("checksum mismatch"), "{}", r.stderr);
    assert!(r.stderr.contains(&url), "{}", r.stderr);
}

#[test]
fn add_url_unchanged_stays_cached_and_a_changed_one_is_fetched_again() {
    if !have_tool("python3") {
        return;
    }
    let dir = scratch();
    let srv = dir.path().join("srv");
    write_tree(&srv, &[("data.txt", "one\n")]);
    set_mtime(&srv.join("data.txt"), 1_600_000_000);
    let log = dir.path().join("http.log");
    let server = http_server(&srv, &log);
    let url = format!("http://127.0.0.1:{}/data.txt", server.port);
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[("Dockerfile", &format!("FROM scratch\nADD {url} /d/\n"))],
    );

    build_fs(dir.path(), &ctx, "fs1");
    let (_, second) = build_fs(dir.path(), &ctx, "fs2");
    let steps = op_steps(&second.stderr);
    assert!(steps[0].cached, "{}", second.stderr);
    // The cached copy was re-validated, not downloaded again.
    let requests = std::fs::read_to_string(&log).unwrap();
    assert!(requests.contains("\" 304 "), "{requests}");

    write_tree(&srv, &[("data.txt", "two\n")]);
    set_mtime(&srv.join("data.txt"), 1_600_000_100);
    let (fs, third) = build_fs(dir.path(), &ctx, "fs3");
    let steps = op_steps(&third.stderr);
    assert!(!steps[0].cached, "{}", third.stderr);
    let why = steps[0].miss.clone().unwrap_or_default();
    assert!(
        why.contains(&format!("content of {url} changed")),
        "{}",
        third.stderr
    );
    assert_eq!(
        std::fs::read_to_string(fs.join("d/data.txt")).unwrap(),
        "two\n"
    );
}

#[test]
fn add_url_credentials_never_reach_output_errors_or_the_store() {
    if !have_tool("python3") {
        return;
    }
    let dir = scratch();
    let srv = dir.path().join("srv");
    write_tree(&srv, &[("f.txt", "f\n")]);
    let server = http_server(&srv, &dir.path().join("http.log"));
    let secret = "s3cretTOKENvalue";
    let ok = format!("http://user:{secret}@127.0.0.1:{}/f.txt", server.port);
    let missing = format!("http://user:{secret}@127.0.0.1:{}/missing", server.port);
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[("Dockerfile", &format!("FROM scratch\nADD {ok} /f\n"))],
    );
    let (fs, r) = build_fs(dir.path(), &ctx, "fs");
    assert_eq!(std::fs::read_to_string(fs.join("f")).unwrap(), "f\n");
    assert!(!r.stderr.contains(secret) && !r.stdout.contains(secret));
    assert!(r.stderr.contains("http://***@127.0.0.1"), "{}", r.stderr);

    write_tree(
        &ctx,
        &[("Dockerfile", &format!("FROM scratch\nADD {missing} /f\n"))],
    );
    let r = build(&dir.path().join("store"), &ctx, &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("Dockerfile:2"), "{}", r.stderr);
    assert!(r.stderr.contains("404"), "{}", r.stderr);
    assert!(
        !r.stderr.contains(secret) && !r.stdout.contains(secret),
        "{}",
        r.stderr
    );

    let explain = rbuild_tests::run(
        rbuild_tests::rbuild(&dir.path().join("store"))
            .arg("explain")
            .arg(&ctx),
    );
    assert!(!explain.stdout.contains(secret) && !explain.stderr.contains(secret));
    let grep = Command::new("grep")
        .args(["-r", "-l", secret])
        .arg(dir.path().join("store"))
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&grep.stdout)
    );
}

#[test]
fn add_git_takes_refs_subdirs_and_keeps_git_dir_only_when_asked() {
    if !have_tool("git") {
        return;
    }
    let dir = scratch();
    let base = dir.path().join("git");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    write_tree(
        &work,
        &[
            ("a.txt", "a\n"),
            ("sub/s.txt", "s\n"),
            ("run.sh", "#!/bin/sh\n"),
        ],
    );
    std::fs::set_permissions(
        work.join("run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "one"]);
    git(&work, &["tag", "-a", "v1", "-m", "v1"]);
    let v1 = git(&work, &["rev-parse", "HEAD"]);
    write_tree(&work, &[("b.txt", "b\n")]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "two"]);
    std::fs::create_dir_all(&base).unwrap();
    git(
        &base,
        &["clone", "-q", "--bare", work.to_str().unwrap(), "repo.git"],
    );
    let daemon = git_daemon(&base);
    let repo = format!("git://127.0.0.1:{}/repo.git", daemon.port);
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            &format!(
                "FROM scratch\n\
                 ADD {repo} /head\n\
                 ADD {repo}#v1 /tag/\n\
                 ADD {repo}#main:sub /sub\n\
                 ADD {repo}#{v1} /sha\n\
                 ADD --keep-git-dir {repo}#v1 /kept\n"
            ),
        )],
    );
    let (fs, _) = build_fs(dir.path(), &ctx, "fs");
    assert!(fs.join("head/b.txt").is_file());
    assert!(!fs.join("head/.git").exists());
    assert_eq!(mode(&fs.join("head/run.sh")), 0o755);
    assert_eq!(mode(&fs.join("head/a.txt")), 0o644);
    assert_eq!(mode(&fs.join("head/sub")), 0o755);
    assert!(fs.join("tag/a.txt").is_file() && !fs.join("tag/b.txt").exists());
    assert!(fs.join("sub/s.txt").is_file() && !fs.join("sub/a.txt").exists());
    assert!(fs.join("sha/a.txt").is_file() && !fs.join("sha/b.txt").exists());
    assert!(fs.join("kept/.git").is_dir());
    let kept_head = git(&fs.join("kept"), &["rev-parse", "HEAD"]);
    assert_eq!(kept_head, v1);
}

#[test]
fn add_git_branch_that_moved_misses_with_commit_changed() {
    if !have_tool("git") {
        return;
    }
    let dir = scratch();
    let base = dir.path().join("git");
    std::fs::create_dir_all(&base).unwrap();
    let repo_dir = base.join("r.git");
    std::fs::create_dir_all(&repo_dir).unwrap();
    git(&repo_dir, &["init", "-q", "--bare", "-b", "main"]);
    let work = dir.path().join("work");
    git(
        dir.path(),
        &["clone", "-q", repo_dir.to_str().unwrap(), "work"],
    );
    write_tree(&work, &[("f.txt", "1\n")]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "one"]);
    git(&work, &["push", "-q", "origin", "HEAD:main"]);
    let daemon = git_daemon(&base);
    let repo = format!("git://127.0.0.1:{}/r.git", daemon.port);
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            &format!("FROM scratch\nADD {repo}#main /src\n"),
        )],
    );

    build_fs(dir.path(), &ctx, "fs1");
    let (_, again) = build_fs(dir.path(), &ctx, "fs2");
    assert!(op_steps(&again.stderr)[0].cached, "{}", again.stderr);

    write_tree(&work, &[("f.txt", "2\n")]);
    git(&work, &["commit", "-qam", "two"]);
    git(&work, &["push", "-q", "origin", "HEAD:main"]);
    let (fs, moved) = build_fs(dir.path(), &ctx, "fs3");
    let step = &op_steps(&moved.stderr)[0];
    assert!(!step.cached, "{}", moved.stderr);
    let why = step.miss.clone().unwrap_or_default();
    assert!(
        why.contains(&format!("commit of {repo} changed")),
        "{}",
        moved.stderr
    );
    assert_eq!(
        std::fs::read_to_string(fs.join("src/f.txt")).unwrap(),
        "2\n"
    );
}

/// A forward proxy on loopback that sends every request (absolute-form GET or CONNECT) to
/// 127.0.0.1 at the requested port, logging what it was asked.
const PROXY_PY: &str = r#"
import http.server, http.client, socket, select, sys, urllib.parse
class P(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        sys.stderr.write("PROXY GET %s\n" % self.path); sys.stderr.flush()
        u = urllib.parse.urlsplit(self.path)
        c = http.client.HTTPConnection('127.0.0.1', u.port)
        c.request('GET', u.path)
        r = c.getresponse(); body = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() in ('content-length', 'last-modified'):
                self.send_header(k, v)
        self.end_headers(); self.wfile.write(body)
    def do_CONNECT(self):
        sys.stderr.write("PROXY CONNECT %s\n" % self.path); sys.stderr.flush()
        s = socket.create_connection(('127.0.0.1', int(self.path.rsplit(':', 1)[1])))
        self.send_response(200); self.end_headers()
        c = self.connection
        while True:
            r, _, _ = select.select([c, s], [], [], 10)
            if not r: return
            for x in r:
                d = x.recv(65536)
                if not d: return
                (s if x is c else c).sendall(d)
http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), P).serve_forever()
"#;

#[test]
fn add_url_goes_through_the_proxy_from_the_environment() {
    if !have_tool("python3") {
        return;
    }
    let dir = scratch();
    let srv = dir.path().join("srv");
    write_tree(&srv, &[("p.txt", "via proxy\n")]);
    let server = http_server(&srv, &dir.path().join("http.log"));
    let port = free_port();
    let proxy_log = dir.path().join("proxy.log");
    let child = Command::new("python3")
        .args(["-c", PROXY_PY, &port.to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&proxy_log).unwrap())
        .spawn()
        .unwrap();
    wait_for(port);
    let _proxy = Server { child, port };
    // A name that does not resolve: only the proxy can reach it.
    let url = format!("http://rbuild-proxy-test.invalid:{}/p.txt", server.port);
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[("Dockerfile", &format!("FROM scratch\nADD {url} /p\n"))],
    );
    let fs = dir.path().join("fs");
    let dest = format!("type=local,dest={}", fs.display());
    rbuild_tests::run(
        rbuild_tests::build::build_cmd(&dir.path().join("store"), &ctx)
            .args(["--output", dest.as_str()])
            .env("HTTP_PROXY", format!("http://127.0.0.1:{port}"))
            .env_remove("http_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy"),
    )
    .success();
    assert_eq!(
        std::fs::read_to_string(fs.join("p")).unwrap(),
        "via proxy\n"
    );
    let log = std::fs::read_to_string(&proxy_log).unwrap();
    assert!(log.contains("rbuild-proxy-test.invalid"), "{log}");
}

/// A git URL as the build context, as buildx takes one: `#ref:subdir` picks the commit and the
/// directory, `-f` names a file of the repository, `.git` is not in the context, and the image
/// carries the commit as its revision and its time as `created`.
#[test]
fn a_git_url_context_builds_the_ref_and_subdir_it_names() {
    if !have_tool("git") {
        return;
    }
    let dir = scratch();
    let base = dir.path().join("git");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    write_tree(
        &work,
        &[
            ("app/Dockerfile", "FROM scratch\nCOPY . /ctx/\n"),
            ("app/other.Dockerfile", "FROM scratch\nCOPY v.txt /other\n"),
            ("app/v.txt", "one\n"),
            ("outside.txt", "not in the context\n"),
        ],
    );
    git(&work, &["add", "-A"]);
    // The committer time is what `created` comes from.
    let committed = Command::new("git")
        .args(["commit", "-qm", "one"])
        .current_dir(&work)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .env("GIT_COMMITTER_DATE", "@1700000000 +0000")
        .status()
        .unwrap();
    assert!(committed.success());
    let one = git(&work, &["rev-parse", "HEAD"]);
    write_tree(&work, &[("app/v.txt", "two\n")]);
    git(&work, &["commit", "-qam", "two"]);
    std::fs::create_dir_all(&base).unwrap();
    git(
        &base,
        &["clone", "-q", "--bare", work.to_str().unwrap(), "repo.git"],
    );
    let daemon = git_daemon(&base);
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);
    let store = dir.path().join("store");
    let out = dir.path().join("out");
    let layout = dir.path().join("layout");
    let r = rbuild_tests::run(
        rbuild_tests::rbuild(&store)
            .env_remove("SOURCE_DATE_EPOCH")
            .arg("build")
            .arg(format!("{url}#{one}:app"))
            .args(["--output", &format!("type=local,dest={}", out.display())])
            .args([
                "--output",
                &format!("type=oci,dest={},tar=false", layout.display()),
            ]),
    )
    .success();
    assert_eq!(
        std::fs::read_to_string(out.join("ctx/v.txt")).unwrap(),
        "one\n",
        "{}",
        r.stderr
    );
    assert!(!out.join("ctx/.git").exists() && !out.join("ctx/outside.txt").exists());
    let index = rbuild_tests::oci::index(&layout);
    let manifest =
        rbuild_tests::oci::blob_json(&layout, index["manifests"][0]["digest"].as_str().unwrap());
    let config =
        rbuild_tests::oci::blob_json(&layout, manifest["config"]["digest"].as_str().unwrap());
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.revision"], one.as_str());
    assert_eq!(
        config["created"], "2023-11-14T22:13:20Z",
        "the commit's time"
    );
    // The branch, and -f inside the repository.
    let out2 = dir.path().join("out2");
    rbuild_tests::run(
        rbuild_tests::rbuild(&store)
            .env_remove("SOURCE_DATE_EPOCH")
            .arg("build")
            .arg(format!("{url}#main:app"))
            .args(["-f", "other.Dockerfile"])
            .args(["--output", &format!("type=local,dest={}", out2.display())]),
    )
    .success();
    assert_eq!(
        std::fs::read_to_string(out2.join("other")).unwrap(),
        "two\n"
    );
    // Another URL is a tarball context (see build_named_contexts.rs): downloaded, so a server
    // that is not there is a usage error naming it.
    let r = rbuild_tests::run(
        rbuild_tests::rbuild(&store)
            .arg("build")
            .arg("https://127.0.0.1:1/context.tar.gz"),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the context https://127.0.0.1:1/context.tar.gz: downloading"),
        "{}",
        r.stderr
    );
}
