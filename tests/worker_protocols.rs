//! The one-shot protocols on the worker port, over real sockets to the real server binary:
//! kromosynth-cli's render worker (a message without `type`, answered by one binary message of
//! f32 samples and a close) and the PCM server's `get_audio_data` (one binary message of
//! 16-bit PCM), plus plain HTTP (`/health`) on both ports.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use krs_engine::{render_batch, CompiledGenome, RenderRequest};
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn start() -> ServerProcess {
    ServerProcess::start(&["--worker-port", "0"])
}

/// A worker-port connection; nothing is read (the port sends no greeting).
fn connect(server: &ServerProcess) -> Socket {
    let url = server
        .worker_url
        .as_deref()
        .expect("started with --worker-port");
    tungstenite::connect(url).unwrap().0
}

/// What `render` writes (kromosynth's normalization), which the original worker answers.
fn normalized(id: &str, request: &RenderRequest) -> Vec<f32> {
    let genome = CompiledGenome::from_json(&genome_json(id)).unwrap();
    render_batch(&genome, request, true).unwrap()
}

fn genome_string(id: &str) -> String {
    String::from_utf8(genome_json(id)).unwrap()
}

fn first_message(socket: &mut Socket) -> Message {
    loop {
        match socket.read().unwrap() {
            Message::Ping(_) | Message::Pong(_) => continue,
            m => return m,
        }
    }
}

#[test]
fn render_worker_answers_every_fixture_genome_with_the_originals_samples() {
    let server = start();
    for id in deterministic_ids() {
        let mut socket = connect(&server);
        socket
            .send(Message::Text(
                json!({"genomeString": genome_string(&id), "duration": 1, "noteDelta": 0,
                    "velocity": 1, "useGPU": false, "antiAliasing": false,
                    "frequencyUpdatesApplyToAllPathcNetworkOutputs": false,
                    "sampleRate": 48000})
                .to_string(),
            ))
            .unwrap();
        let got = match first_message(&mut socket) {
            Message::Binary(bytes) => f32s(&bytes),
            other => panic!("{id}: expected the samples first, got {other:?}"),
        };
        // The original's own render of this request, stored with the fixtures.
        let original: Vec<f32> =
            f32s(&std::fs::read(fixtures::dir().join(format!("{id}.0_1_1.f32"))).unwrap());
        assert_bits_eq(&got, &original, &format!("worker {id} vs the original"));
        assert_bits_eq(
            &got,
            &normalized(&id, &request(1.0, 0.0, 1.0)),
            &format!("worker {id} vs render"),
        );
        // Then the server closes, as the original worker does.
        match socket.read() {
            Ok(Message::Close(frame)) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000));
            }
            other => panic!("{id}: expected a close, got {other:?}"),
        }
    }
}

/// The original's renders at other rates and with its two CPPN options
/// (tests/fixtures/rates), asked for as kromosynth-cli asks.
#[test]
fn render_worker_matches_the_original_at_every_reference_rate_and_option() {
    let server = start();
    let dir = fixtures::dir().join("../rates");
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mut checked = 0;
    for g in index["genomes"].as_array().unwrap() {
        let id = g["id"].as_str().unwrap();
        for r in g["renders"].as_array().unwrap() {
            let mut socket = connect(&server);
            socket
                .send(Message::Text(
                    json!({"genomeString": genome_string(id), "duration": r["duration"],
                        "noteDelta": r["noteDelta"], "velocity": r["velocity"], "useGPU": false,
                        "antiAliasing": r["antiAliasing"],
                        "frequencyUpdatesApplyToAllPathcNetworkOutputs":
                            r["frequencyUpdatesApplyToAllPathcNetworkOutputs"],
                        "sampleRate": r["sampleRate"]})
                    .to_string(),
                ))
                .unwrap();
            let file = r["file"].as_str().unwrap();
            let got = match first_message(&mut socket) {
                Message::Binary(bytes) => f32s(&bytes),
                other => panic!("{file}: expected samples, got {other:?}"),
            };
            let original = f32s(&std::fs::read(dir.join(file)).unwrap());
            assert_bits_eq(&got, &original, file);
            checked += 1;
        }
    }
    assert_eq!(checked, 49, "every reference render");
}

#[test]
fn the_worker_port_sends_nothing_before_the_answer_and_accepts_every_genome_wrapping() {
    let server = start();
    let mut socket = connect(&server);
    if let MaybeTlsStream::Plain(tcp) = socket.get_mut() {
        tcp.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    match socket.read() {
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("the worker port greeted: {other:?}"),
    }
    drop(socket);
    let stored: Value = serde_json::from_slice(&genome_json(GENOME)).unwrap();
    let genome = stored["genome"].clone();
    let want = normalized(GENOME, &request(0.5, 7.0, 0.8));
    for wrapped in [
        json!({"genome": {"genome": genome.clone()}}),
        json!({"genome": genome.clone()}),
        genome.clone(),
        stored.clone(),
    ] {
        let mut socket = connect(&server);
        socket
            .send(Message::Text(
                json!({"genomeString": wrapped.to_string(), "duration": 0.5, "noteDelta": 7,
                    "velocity": 0.8, "sampleRate": 48000})
                .to_string(),
            ))
            .unwrap();
        match first_message(&mut socket) {
            Message::Binary(bytes) => assert_bits_eq(&f32s(&bytes), &want, "wrapped genome"),
            other => panic!("expected samples, got {other:?}"),
        }
    }
}

#[test]
fn render_worker_failures_are_error_texts_naming_the_field() {
    let server = start();
    let genome = genome_string(GENOME);
    for (message, needle) in [
        (
            json!({"genomeString": genome, "duration": 1, "antiAliasing": "yes"}),
            "antiAliasing",
        ),
        (
            json!({"genomeString": genome, "duration": 1, "frequencyUpdatesApplyToAllPathcNetworkOutputs": 1}),
            "frequencyUpdatesApplyToAllPathcNetworkOutputs",
        ),
        (
            json!({"genomeString": genome, "duration": 1, "sampleRate": 7999}),
            "sampleRate",
        ),
        (
            json!({"genomeString": genome, "duration": 1, "sampleRate": 192001}),
            "sampleRate",
        ),
        (
            json!({"genomeString": genome, "duration": 1, "reverse": true}),
            "reverse",
        ),
        (
            json!({"genomeString": genome, "duration": 1, "useOvertoneInharmonicityFactors": true}),
            "useOvertoneInharmonicityFactors",
        ),
        (
            json!({"genomeString": genome, "duration": 1, "sampleCountToActivate": 100}),
            "sampleCountToActivate",
        ),
        (
            json!({"genomeString": genome, "duration": 1, "sampleOffset": 5}),
            "sampleOffset",
        ),
        (
            json!({"genomeString": genome, "duration": 1, "sampleRate": 1000}),
            "sampleRate",
        ),
        (
            json!({"genomeString": genome, "duration": 1, "sampleRate": "fast"}),
            "sampleRate",
        ),
        (json!({"genomeString": genome, "duration": -1}), "duration"),
        (json!({"genomeString": 5, "duration": 1}), "genomeString"),
        (json!({"genomeString": "{}", "duration": 1}), "genome"),
        (json!({"duration": 1}), "genomeString"),
        (json!({"genomeId": "01NOSUCH", "duration": 1}), "01NOSUCH"),
        (
            json!({"genomeId": GENOME, "evoRunId": "../etc", "duration": 1}),
            "evoRunId",
        ),
        (
            json!({"genomeStringUrl": "http://x/y.json", "duration": 1}),
            "genomeStringUrl",
        ),
        (
            json!({"type": "render", "genomeString": genome, "duration": 1}),
            "type",
        ),
    ] {
        let mut socket = connect(&server);
        socket.send(Message::Text(message.to_string())).unwrap();
        match first_message(&mut socket) {
            Message::Text(text) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                let error = v["error"].as_str().unwrap_or_else(|| panic!("{text}"));
                assert!(
                    error.contains(needle) || (needle == "type" && error.contains("Unknown")),
                    "{needle}: {error}"
                );
                assert!(
                    v.get("type").is_none(),
                    "the worker's error has no type: {text}"
                );
            }
            other => panic!("{needle}: expected an error text, got {other:?}"),
        }
    }
    let mut socket = connect(&server);
    socket.send(Message::Text("{nope".into())).unwrap();
    assert!(matches!(first_message(&mut socket), Message::Text(t) if t.contains("Invalid JSON")));
}

/// `Math.round(Math.max(-1, Math.min(1, x)) * 0x7FFF)`: the product is exact in f64, so adding
/// a half and flooring is JavaScript's rounding (halves up) exactly.
fn pcm16(samples: &[f32]) -> Vec<i16> {
    samples
        .iter()
        .map(|&x| {
            let v = (x as f64).clamp(-1.0, 1.0) * 32767.0;
            if v.is_nan() {
                0
            } else {
                (v + 0.5).floor() as i16
            }
        })
        .collect()
}

#[test]
fn pcm_clients_get_16_bit_samples_and_an_empty_message_on_failure() {
    let server = start();
    let mut socket = connect(&server);
    for id in genome_ids() {
        let stored: Value = serde_json::from_slice(&genome_json(&id)).unwrap();
        // The PCM server takes the genome as a string or as an object.
        for genome in [Value::String(stored.to_string()), stored.clone()] {
            socket
                .send(Message::Text(
                    json!({"type": "get_audio_data", "genomeString": genome, "duration": 0.5,
                        "noteDelta": -3, "velocity": 0.9, "reverse": false,
                        "useOvertoneInharmonicityFactors": false, "useGPU": false,
                        "overrideGenomeDurationNoteDeltaAndVelocity": true})
                    .to_string(),
                ))
                .unwrap();
            let got: Vec<i16> = match first_message(&mut socket) {
                Message::Binary(bytes) => bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect(),
                other => panic!("{id}: expected PCM, got {other:?}"),
            };
            assert_eq!(
                got,
                pcm16(&normalized(&id, &request(0.5, -3.0, 0.9))),
                "{id}"
            );
        }
    }
    // Failures are an empty binary message, and the connection stays usable.
    for bad in [
        json!({"type": "get_audio_data", "genomeString": "{}", "duration": 1}),
        json!({"type": "get_audio_data", "genomeStringUrl": "http://127.0.0.1:3004/g.json.gz", "duration": 1}),
        json!({"type": "get_audio_data", "genomeString": genome_string(GENOME), "duration": 1, "reverse": true}),
    ] {
        socket.send(Message::Text(bad.to_string())).unwrap();
        match first_message(&mut socket) {
            Message::Binary(bytes) => assert!(bytes.is_empty(), "{bad}"),
            other => panic!("{bad}: expected an empty binary message, got {other:?}"),
        }
    }
}

/// One plain HTTP request; the whole answer.
fn http(addr: &str, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).unwrap();
    String::from_utf8(answer).unwrap()
}

#[test]
fn health_answers_on_both_ports_and_other_paths_get_http_statuses() {
    let server = start();
    let worker = server.worker_url.clone().unwrap();
    for addr in [
        server.url.trim_start_matches("ws://"),
        worker.trim_start_matches("ws://"),
    ] {
        let answer = http(addr, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("Content-Type: application/json\r\n"));
        let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["status"], "ok");
        let ts = body["timestamp"].as_str().unwrap();
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && ts.starts_with("20"),
            "{ts}"
        );
        let head = http(addr, "HEAD /health HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"));
        assert!(http(addr, "GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        // The player page on the service port; the worker port's clients are programs.
        let root = http(addr, "GET / HTTP/1.1\r\n\r\n");
        if addr == worker.trim_start_matches("ws://") {
            assert!(root.starts_with("HTTP/1.1 426 "), "{root}");
        } else {
            assert!(root.starts_with("HTTP/1.1 200 OK\r\n"), "{root}");
        }
        assert!(http(addr, "DELETE /health HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
    }
    // The WebSocket path is unchanged next to it.
    let (mut socket, welcome) = kromosynth_render_socket::client::connect(&server.url).unwrap();
    assert_eq!(welcome["type"], "welcome");
    assert_still_renders(&mut socket, "ws");
}

/// `count` render-worker requests at once, one connection each (genome `i % ids`, noteDelta
/// `i % 5`, `seconds` long), each checked bit for bit against the batch renderer.
fn concurrent_worker_renders(server: &ServerProcess, count: usize, seconds: f64) {
    let ids = deterministic_ids();
    let threads: Vec<_> = (0..count)
        .map(|i| {
            let url = server.worker_url.clone().unwrap();
            let id = ids[i % ids.len()].clone();
            std::thread::spawn(move || {
                let mut socket = tungstenite::connect(&url).unwrap().0;
                let note_delta = (i % 5) as f64;
                socket
                    .send(Message::Text(
                        json!({"genomeString": genome_string(&id), "duration": seconds,
                            "noteDelta": note_delta, "velocity": 1, "sampleRate": 48000})
                        .to_string(),
                    ))
                    .unwrap();
                let got = match first_message(&mut socket) {
                    Message::Binary(bytes) => f32s(&bytes),
                    other => panic!("expected samples, got {other:?}"),
                };
                assert_bits_eq(
                    &got,
                    &normalized(&id, &request(seconds, note_delta, 1.0)),
                    &format!("concurrent {id}"),
                );
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn many_worker_connections_at_once_each_get_their_own_render() {
    let server = start();
    concurrent_worker_renders(&server, 48, 0.25);
    assert_eq!(
        server.wait_for_no_renders(Duration::from_secs(10))["renders"],
        0
    );
}

#[test]
fn kromosynth_cli_node_worker_client_gets_the_samples() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    if Command::new("node").arg("--version").output().is_err()
        || !dir.join("node_modules/ws").is_dir()
    {
        eprintln!(
            "skipping kromosynth_cli_node_worker_client: needs node and `npm ci` in tests/clients"
        );
        return;
    }
    let server = start();
    let out = std::env::temp_dir().join(format!("krs-worker-client-{}.f32", std::process::id()));
    let genome_file = fixtures::genome_path(GENOME);
    let output = Command::new("node")
        .current_dir(&dir)
        .arg("render-worker-client.js")
        .arg(server.worker_url.as_deref().unwrap())
        .arg(&genome_file)
        .args(["1", "0", "1", "48000"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let got = f32s(&std::fs::read(&out).unwrap());
    let _ = std::fs::remove_file(&out);
    assert_bits_eq(
        &got,
        &normalized(GENOME, &request(1.0, 0.0, 1.0)),
        "node worker client",
    );
}

#[test]
fn genome_id_with_evo_run_id_reads_that_runs_database() {
    let root = std::env::temp_dir().join(format!("krs-evoruns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let run_dir = root.join("01-run_A.16k");
    std::fs::create_dir_all(&run_dir).unwrap();
    let imported = Command::new(env!("CARGO_BIN_EXE_kromosynth-render-socket"))
        .args(["import", "--db"])
        .arg(run_dir.join("genomes.sqlite"))
        .arg(fixtures::genome_path(GENOME))
        .output()
        .unwrap();
    assert!(imported.status.success(), "{imported:?}");
    let with_runs = ServerProcess::start(&[
        "--worker-port",
        "0",
        "--evoruns-dir",
        root.to_str().unwrap(),
    ]);
    let without = start();
    let ask = |server: &ServerProcess, run: &str, id: &str| {
        let mut socket = connect(server);
        socket
            .send(Message::Text(
                json!({"genomeId": id, "evoRunId": run, "duration": 0.5, "noteDelta": 0,
                    "velocity": 1, "sampleRate": 48000})
                .to_string(),
            ))
            .unwrap();
        first_message(&mut socket)
    };
    match ask(&with_runs, "01-run_A.16k", GENOME) {
        Message::Binary(bytes) => assert_bits_eq(
            &f32s(&bytes),
            &normalized(GENOME, &request(0.5, 0.0, 1.0)),
            "genome from the run's database",
        ),
        other => panic!("expected samples, got {other:?}"),
    }
    for (server, run, id, needle) in [
        (
            &with_runs,
            "01-run_A.16k",
            "01M88X7HMX6C9TPT2A9HCKMZQJ",
            "01M88X7HMX6C9TPT2A9HCKMZQJ",
        ),
        (&with_runs, "no-such-run", GENOME, "no-such-run"),
        (&without, "01-run_A.16k", GENOME, "--evoruns-dir"),
    ] {
        match ask(server, run, id) {
            Message::Text(text) => assert!(text.contains(needle), "{needle}: {text}"),
            other => panic!("{needle}: expected an error, got {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// kromosynth-cli takes an error for a failed evaluation, so a worker-port render that does
/// not fit the CPU budget waits for room instead of being refused: with room for about one
/// render at a time (`--cpu-budget 0.03`), six at once all get their samples.
#[test]
fn worker_renders_wait_for_room_in_the_cpu_budget_instead_of_failing() {
    let server = ServerProcess::start(&["--worker-port", "0", "--cpu-budget", "0.03"]);
    concurrent_worker_renders(&server, 6, 1.0);
    let stats = server.wait_for_no_renders(Duration::from_secs(10));
    assert_eq!(stats["renders"], 0, "{stats}");
    assert_eq!(stats["cpuReserved"], 0, "{stats}");
}
