//! The Node.js example client (tests/clients/client.js, `ws` package) against the real server:
//! what it writes equals the batch render of the same request, in JSON and in binary mode.
//! Skips, saying so, where Node.js or the client's `npm ci` is missing.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use kromosynth_render_socket::audio_file;

#[test]
fn node_client_receives_the_batch_render() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("skipping node_client: `node` is not installed");
        return;
    }
    if !dir.join("node_modules/ws").is_dir() {
        eprintln!("skipping node_client: run `npm ci` in tests/clients (the ws package) first");
        return;
    }
    let server = ServerProcess::start(&[]);
    let want = reference(GENOME, &request(2.0, 0.0, 0.5));
    for binary in [false, true] {
        let out = std::env::temp_dir().join(format!(
            "krs-node-client-{}-{binary}.f32",
            std::process::id()
        ));
        let mut cmd = Command::new("node");
        cmd.current_dir(&dir)
            .args(["client.js", GENOME, "2", "--url", &server.url, "--out"])
            .arg(&out);
        if binary {
            cmd.arg("--binary");
        }
        let output = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "node client failed: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("first chunk after"), "{stdout}");
        assert!(stdout.contains("24 chunks, 96000 samples"), "{stdout}");
        let got = audio_file::read(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        assert_bits_eq(
            &got,
            &want,
            if binary { "node binary" } else { "node json" },
        );
    }
}
