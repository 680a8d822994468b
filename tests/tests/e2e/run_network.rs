//! RUN networking: `default` shares the host's network (a server on the host's 127.0.0.1 is
//! reachable); `--network=none` is a new namespace holding only a loopback that is up.

use std::io::{Read, Write};
use std::net::TcpListener;

use rbuild_tests::build::build;
use rbuild_tests::scratch;

use super::run_sandbox::{setup, BASE};

/// Serves `reachable` over HTTP/1.0 on 127.0.0.1 until the test ends; returns the port.
fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nreachable\n");
        }
    });
    port
}

#[test]
fn network_none_cannot_reach_a_host_server_that_the_default_network_can() {
    let port = serve();
    let dir = scratch();
    let df = format!(
        "FROM {BASE}\n\
         ARG PORT\n\
         RUN wget -q -O /default.txt http://127.0.0.1:$PORT/\n\
         RUN --network=host wget -q -O /host.txt http://127.0.0.1:$PORT/\n\
         RUN --network=none (wget -q -O - http://127.0.0.1:$PORT/ || echo unreachable) > /none.txt\n\
         RUN --network=none ls /sys/class/net > /none-ifaces.txt && cat /sys/class/net/lo/flags > /none-lo-flags.txt\n"
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    let fs = dir.path().join("fs");
    build(
        &store,
        &ctx,
        &[
            "--build-arg",
            &format!("PORT={port}"),
            "--output",
            &format!("type=local,dest={}", fs.display()),
        ],
    )
    .success();
    let read = |p: &str| std::fs::read_to_string(fs.join(p)).unwrap();
    assert_eq!(read("default.txt"), "reachable\n");
    assert_eq!(read("host.txt"), "reachable\n");
    assert_eq!(read("none.txt"), "unreachable\n");
    assert_eq!(read("none-ifaces.txt"), "lo\n", "only loopback");
    // IFF_UP (0x1) | IFF_LOOPBACK (0x8), plus IFF_RUNNING which sysfs does not show.
    assert_eq!(read("none-lo-flags.txt"), "0x9\n", "loopback is up");
}

#[test]
fn the_command_line_network_none_applies_to_every_run_that_does_not_choose() {
    let port = serve();
    let dir = scratch();
    let df = format!(
        "FROM {BASE}\n\
         ARG PORT\n\
         RUN (wget -q -O - http://127.0.0.1:$PORT/ || echo unreachable) > /implicit.txt\n\
         RUN --network=host wget -q -O /explicit.txt http://127.0.0.1:$PORT/\n"
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    let fs = dir.path().join("fs");
    build(
        &store,
        &ctx,
        &[
            "--network",
            "none",
            "--build-arg",
            &format!("PORT={port}"),
            "--output",
            &format!("type=local,dest={}", fs.display()),
        ],
    )
    .success();
    let read = |p: &str| std::fs::read_to_string(fs.join(p)).unwrap();
    assert_eq!(
        read("implicit.txt"),
        "unreachable\n",
        "--network none is the default"
    );
    assert_eq!(
        read("explicit.txt"),
        "reachable\n",
        "RUN --network=host wins"
    );
}
