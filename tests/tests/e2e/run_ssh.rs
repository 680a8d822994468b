//! `RUN --mount=type=ssh` with `--ssh`: a key generated with `ssh-keygen`, loaded into an
//! `ssh-agent` on a temporary socket, a real `sshd` on a loopback port serving a bare git
//! repository, and a RUN step that clones it with `git clone ssh://…` through the forwarded
//! agent. The image gets `git` and `ssh` from the host (the binaries and the libraries `ldd`
//! names) on top of the busybox base. Also: the socket leaves no trace in the layer, the key and
//! the agent's socket path are in no blob, record, metadata or log, the cache key does not
//! depend on the socket, and the `required` rules are BuildKit's.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rbuild_tests::build::{build, write_tree};
use rbuild_tests::{have_tool, run, scratch, tools_required};

use super::run_mounts::files_containing;
use super::run_sandbox::{setup, BASE};

/// A child process killed (and reaped) when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ssh-agent` in the foreground on `sock`, holding `key`.
fn agent(sock: &Path, key: &Path) -> Daemon {
    let d = Daemon(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(sock)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("ssh-agent", || sock.exists());
    run(Command::new("ssh-add").arg(key).env("SSH_AUTH_SOCK", sock)).success();
    d
}

/// A private key (`dir/<name>`, comment `comment`) made with ssh-keygen.
fn keygen(dir: &Path, name: &str, comment: &str) -> PathBuf {
    let key = dir.join(name);
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(&key))
    .success();
    key
}

/// `sshd` on 127.0.0.1 with its own host key, accepting `client_pub` for root.
fn sshd(dir: &Path, client_pub: &Path) -> (Daemon, u16) {
    let host_key = keygen(dir, "host_ed25519", "host");
    let authorized = dir.join("authorized_keys");
    std::fs::copy(client_pub, &authorized).unwrap();
    // Debian's sshd refuses to start without its privilege separation directory.
    std::fs::create_dir_all("/run/sshd").unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nStrictModes no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PermitRootLogin prohibit-password\nAllowUsers root\nPidFile none\n",
            host_key.display(),
            authorized.display()
        ),
    )
    .unwrap();
    let d = Daemon(
        Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .args(["-p", &port.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("sshd", || TcpStream::connect(("127.0.0.1", port)).is_ok());
    (d, port)
}

/// A bare repository at `dir/repo.git` whose one commit holds `hello.txt` = `content`.
fn bare_repo(dir: &Path, content: &str) -> PathBuf {
    let work = dir.join("work");
    write_tree(&work, &[("hello.txt", content)]);
    let git = |args: &[&str], cwd: &Path| {
        run(Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(cwd))
        .success();
    };
    git(&["init", "-q", "-b", "main"], &work);
    git(&["add", "hello.txt"], &work);
    git(&["commit", "-q", "-m", "one"], &work);
    let bare = dir.join("repo.git");
    git(
        &["clone", "-q", "--bare", ".", bare.to_str().unwrap()],
        &work,
    );
    bare
}

/// Copies `tools` (host paths) and every library `ldd` names for them into `root`, at the same
/// paths, so a busybox image gets working glibc binaries.
fn host_tools(root: &Path, tools: &[&str]) {
    let mut files: Vec<String> = tools.iter().map(|t| t.to_string()).collect();
    for t in tools {
        let out = run(Command::new("ldd").arg(t)).success().stdout;
        for line in out.lines() {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(p) = path.filter(|p| p.starts_with('/')) {
                files.push(p.to_string());
            }
        }
    }
    for f in files {
        let dest = root.join(f.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        // Follows symlinks: the library's content lands under the name the loader looks for.
        std::fs::copy(&f, &dest).unwrap();
    }
}

fn ssh_tools_available() -> bool {
    let clients = ["ssh-agent", "ssh-add", "ssh-keygen", "ssh", "git", "ldd"]
        .iter()
        .all(|t| have_tool(t));
    if clients && !Path::new("/usr/sbin/sshd").exists() {
        assert!(
            !tools_required(),
            "/usr/sbin/sshd is required by this test (RBUILD_REQUIRE_TOOLS=1): install openssh-server"
        );
        eprintln!("SKIPPED: /usr/sbin/sshd is not installed (openssh-server)");
        return false;
    }
    clients
}

fn which(tool: &str) -> String {
    run(Command::new("sh").args(["-c", &format!("command -v {tool}")]))
        .success()
        .stdout
        .trim()
        .to_string()
}

#[test]
fn git_clone_over_ssh_through_the_forwarded_agent_leaves_no_key_or_socket_behind() {
    if !ssh_tools_available() {
        return;
    }
    let dir = scratch();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let comment = format!("rbuild-e2e-{}", std::process::id());
    let key = keygen(&keys, "id_ed25519", &comment);
    let (_sshd, port) = sshd(&keys, &key.with_extension("pub"));
    let content = format!("cloned over ssh {}\n", std::process::id());
    let repo = bare_repo(dir.path(), &content);
    let sock = dir.path().join("agent.sock");
    let _agent = agent(&sock, &key);

    let ssh = format!(
        "ssh -p {port} -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    );
    let df = format!(
        "FROM {BASE}\n\
         COPY tools/ /\n\
         RUN --mount=type=ssh env | grep ^SSH_AUTH_SOCK= > /auth-sock \
             && GIT_SSH_COMMAND='{ssh}' git clone -q ssh://root@127.0.0.1/{repo} /src \
             && rm -rf /src/.git && ssh-add -l > /agent-keys && mkdir -m 777 /out\n\
         USER app\n\
         RUN --mount=type=ssh,id=deploy,target=/home/app/agent.sock,uid=1000,mode=0600 \
             ssh-add -l > /out/as-app && echo \"sock=$SSH_AUTH_SOCK\" >> /out/as-app\n",
        repo = repo.display().to_string().trim_start_matches('/'),
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    host_tools(
        &ctx.join("tools"),
        &[&which("git"), &which("ssh"), &which("ssh-add")],
    );
    let fs = dir.path().join("fs");
    let out = dir.path().join("out");
    let cache = dir.path().join("cache");
    let meta = dir.path().join("meta.json");
    let args = [
        "--ssh".to_string(),
        "default".to_string(),
        "--ssh".to_string(),
        format!("deploy={}", sock.display()),
        "--output".to_string(),
        format!("type=local,dest={}", fs.display()),
        "--output".to_string(),
        format!("type=oci,dest={},tar=false", out.display()),
        "--cache-to".to_string(),
        format!("type=local,dest={},mode=max", cache.display()),
        "--metadata-file".to_string(),
        meta.display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = run(rbuild_tests::build::build_cmd(&store, &ctx)
        .args(&args)
        .env("SSH_AUTH_SOCK", &sock))
    .success();

    let read = |p: &str| std::fs::read_to_string(fs.join(p)).unwrap();
    assert_eq!(read("src/hello.txt"), content, "cloned through the agent");
    assert_eq!(
        read("auth-sock"),
        "SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0\n"
    );
    assert!(
        read("agent-keys").contains(&comment),
        "{}",
        read("agent-keys")
    );
    let as_app = read("out/as-app");
    assert!(
        as_app.contains(&comment),
        "uid=1000 reaches the agent: {as_app}"
    );
    assert!(
        as_app.ends_with("sock=/home/app/agent.sock\n"),
        "SSH_AUTH_SOCK points at the first ssh mount: {as_app}"
    );
    assert!(
        !fs.join("run").exists(),
        "no /run/buildkit stub in the image"
    );
    assert!(!fs.join("home/app/agent.sock").exists(), "no socket stub");

    // Neither the key nor where the agent listens is in any blob, record, export or log.
    let private = std::fs::read_to_string(&key).unwrap();
    let lines: Vec<&str> = private.lines().collect();
    // The first base64 line is the same header for every key: the others are this key's.
    let mut needles: Vec<String> = lines[2..lines.len() - 1]
        .iter()
        .map(|l| l.to_string())
        .collect();
    let sock_path = sock.display().to_string();
    needles.push(sock_path.clone());
    for needle in &needles {
        for root in [&store, &out, &cache, &meta] {
            assert_eq!(
                files_containing(root, needle),
                Vec::<String>::new(),
                "{needle}"
            );
        }
        assert!(!r.stderr.contains(needle.as_str()), "{}", r.stderr);
    }

    // The key does not depend on the socket: another agent, at another path, hits the cache.
    let other = dir.path().join("other.sock");
    let _other_agent = agent(&other, &key);
    let again = run(rbuild_tests::build::build_cmd(&store, &ctx)
        .args(["--ssh", &format!("default={}", other.display())])
        .args(["--ssh", &format!("deploy={}", other.display())]))
    .success();
    let steps = rbuild_tests::progress::op_steps(&again.stderr);
    assert_eq!(steps.len(), 3, "{}", again.stderr);
    assert!(
        steps.iter().all(|s| s.cached),
        "COPY and both RUNs cached: {}",
        again.stderr
    );
    let explain = run(rbuild_tests::rbuild(&store).arg("explain").arg(&ctx)).success();
    assert!(!explain.stdout.contains(&sock_path), "{}", explain.stdout);
    assert!(!explain.stdout.contains(&other.display().to_string()));
}

#[test]
fn an_agent_that_is_not_given_is_an_error_when_required_and_absent_otherwise() {
    let dir = scratch();
    let df = format!(
        "FROM {BASE}\n\
         RUN --mount=type=ssh [ ! -e /run/buildkit/ssh_agent.0 ] && echo \"$SSH_AUTH_SOCK\" > /optional\n\
         RUN --mount=type=ssh,id=deploy,required=true true\n"
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    let fs = dir.path().join("fs");
    let r = build(
        &store,
        &ctx,
        &["--output", &format!("type=local,dest={}", fs.display())],
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("ssh agent \"deploy\" is required but was not given"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--ssh deploy"), "{}", r.stderr);
    assert!(r.stderr.contains("Dockerfile:3"), "{}", r.stderr);
    let df = format!(
        "FROM {BASE}\n\
         RUN --mount=type=ssh [ ! -e /run/buildkit/ssh_agent.0 ] && echo \"$SSH_AUTH_SOCK\" > /optional\n\
         WORKDIR /w\n\
         RUN --mount=type=ssh,target=agent.sock echo \"$SSH_AUTH_SOCK\" > /relative\n"
    );
    write_tree(&ctx, &[("Dockerfile", &df)]);
    build(
        &store,
        &ctx,
        &["--output", &format!("type=local,dest={}", fs.display())],
    )
    .success();
    assert_eq!(
        std::fs::read_to_string(fs.join("optional")).unwrap(),
        "/run/buildkit/ssh_agent.0\n",
        "BuildKit sets SSH_AUTH_SOCK even when the optional agent is not forwarded"
    );
    assert_eq!(
        std::fs::read_to_string(fs.join("relative")).unwrap(),
        "agent.sock\n",
        "a relative target goes into SSH_AUTH_SOCK as written (Docker 20.10's BuildKit)"
    );
}

#[test]
fn a_private_key_file_given_to_ssh_is_refused_before_the_build() {
    let dir = scratch();
    write_tree(
        dir.path(),
        &[
            ("ctx/Dockerfile", "FROM scratch\n"),
            ("id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\n"),
        ],
    );
    let r = build(
        &dir.path().join("store"),
        &dir.path().join("ctx"),
        &[
            "--ssh",
            &format!("default={}", dir.path().join("id_ed25519").display()),
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("never reads private key files"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("ssh-add"), "{}", r.stderr);
    assert!(!r.stderr.contains("BEGIN OPENSSH"), "{}", r.stderr);
}
