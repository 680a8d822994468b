//! Certificates for tests, made with the `openssl` CLI in a directory of the test's.

use std::path::Path;
use std::process::Command;

use crate::run;

/// Runs `openssl ARGS` in `dir`, which must succeed.
pub fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args)).success();
}

/// A self-signed RSA certificate valid for two days, subject `CN=cn`, with `subjectAltName=san`
/// when given (`DNS:name`, `IP:127.0.0.1`): its key and certificate go to `dir/key` and
/// `dir/cert` (PEM).
pub fn self_signed(dir: &Path, cn: &str, san: Option<&str>, key: &str, cert: &str) {
    let subject = format!("/CN={cn}");
    let alt = san.map(|s| format!("subjectAltName={s}"));
    let mut args = vec![
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subject,
    ];
    if let Some(alt) = &alt {
        args.extend(["-addext", alt.as_str()]);
    }
    args.extend(["-keyout", key, "-out", cert]);
    openssl(dir, &args);
}
