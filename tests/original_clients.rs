//! Today's kromosynth clients against the real server, over real sockets: the newest original
//! server's batch form (`batch: true`), the `normalize` and `compressor` options, the accepted
//! legacy flags, and `playback-position`. The samples are compared bit for bit with the
//! engine's render, post-processed by the engine's own post-processing.
//!
//! The Node.js clients (tests/clients/*.js, `ws` package) skip, saying so, where Node.js or the
//! clients' `npm ci` is missing; the Rust clients here always run.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use kromosynth_render_socket::client::{self, read_json, Socket};
use krs_engine::render::post::{peak_normalize, Limiter};
use krs_engine::{render_batch, CompiledGenome, Render, RenderRequest};
use serde_json::{json, Value};
use tungstenite::Message;

fn send(socket: &mut Socket, v: Value) {
    socket.send(Message::Text(v.to_string())).unwrap();
}

/// The raw render post-processed as the batch form does by default.
fn peak_reference(id: &str, request: &RenderRequest) -> Vec<f32> {
    let mut samples = reference(id, request);
    peak_normalize(&mut samples);
    samples
}

/// The render with the newest original server's limiter before the destination.
fn limited_reference(id: &str, request: &RenderRequest) -> Vec<f32> {
    let genome = CompiledGenome::from_json(&genome_json(id)).unwrap();
    let mut render = Render::new(&genome, request).unwrap();
    let mut limiter = Limiter::new(48_000);
    let mut out = Vec::new();
    let mut block = [0.0f32; 128];
    loop {
        let n = render.next_block(&mut block);
        if n == 0 {
            break;
        }
        limiter.process(&mut block);
        out.extend_from_slice(&block[..n]);
    }
    out
}

/// Reads the batch form: `batch-result`, one binary frame, `complete`; checks the two texts'
/// fields and order exactly and returns the samples.
fn read_batch(socket: &mut Socket, request_id: Option<&Value>, duration: f64) -> Vec<f32> {
    let result = read_json(socket).unwrap();
    let mut want_result = json!({"type": "batch-result", "totalSamples": result["totalSamples"],
        "duration": duration, "sampleRate": 48000});
    if let Some(id) = request_id {
        want_result["requestId"] = id.clone();
    }
    assert_eq!(result, want_result);
    let total = result["totalSamples"].as_u64().unwrap() as usize;
    let samples = match socket.read().unwrap() {
        Message::Binary(bytes) => {
            assert_eq!(
                bytes.len(),
                4 * total,
                "exactly totalSamples f32, no header"
            );
            f32s(&bytes)
        }
        other => panic!("expected the binary frame, got {other:?}"),
    };
    let complete = read_json(socket).unwrap();
    let mut want_complete = json!({"type": "complete", "totalChunks": 1, "totalSamples": total,
        "duration": duration, "sampleRate": 48000});
    if let Some(id) = request_id {
        want_complete["requestId"] = id.clone();
    }
    assert_eq!(complete, want_complete);
    samples
}

#[test]
fn batch_form_by_id_and_inline_is_the_peak_normalized_render() {
    let server = ServerProcess::start(&[]);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    for (i, id) in genome_ids().iter().enumerate() {
        let duration = if i % 2 == 0 { 1.0 } else { 0.5 };
        let request_id = json!(format!("composing-{i}"));
        let genome_field = if i % 2 == 0 {
            json!({"genomeId": id})
        } else {
            let stored: Value = serde_json::from_slice(&genome_json(id)).unwrap();
            json!({"genome": stored})
        };
        let mut message = json!({"type": "render", "duration": duration, "noteDelta": 0,
            "velocity": 1, "useGPU": false, "batch": true, "requestId": request_id});
        message
            .as_object_mut()
            .unwrap()
            .extend(genome_field.as_object().unwrap().clone());
        send(&mut socket, message);
        let got = read_batch(&mut socket, Some(&request_id), duration);
        let want = peak_reference(id, &request(duration, 0.0, 1.0));
        assert_bits_eq(&got, &want, &format!("batch {id}"));
        assert!(got.iter().all(|s| s.is_finite() && s.abs() <= 1.0));
    }
    // Without a requestId the messages carry none, as the original's JSON.stringify drops it.
    send(
        &mut socket,
        json!({"type": "render", "genomeId": GENOME, "duration": 0.25, "batch": true}),
    );
    let got = read_batch(&mut socket, None, 0.25);
    assert_bits_eq(
        &got,
        &peak_reference(GENOME, &request(0.25, 0.0, 0.5)),
        "batch without requestId",
    );
}

#[test]
fn normalize_applies_to_streams_and_batches_alike() {
    let server = ServerProcess::start(&[]);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    // 01M88X7XN81HEA58YYNTFXHV28 peaks far outside [-1, 1], so "original" rescales it.
    let id = "01M88X7XN81HEA58YYNTFXHV28";
    let req = request(1.0, 0.0, 0.5);
    let genome = CompiledGenome::from_json(&genome_json(id)).unwrap();
    let original = render_batch(&genome, &req, true).unwrap();
    let raw = reference(id, &req);
    assert_ne!(original, raw, "the test genome must need rescaling");
    let peak = peak_reference(id, &req);
    for (name, want) in [("none", &raw), ("original", &original), ("peak", &peak)] {
        for format in ["json", "binary"] {
            let got = client::render(
                &mut socket,
                &json!({"type": "render", "genomeId": id, "duration": 1.0, "normalize": name,
                    "format": format, "requestId": format!("{name}-{format}")}),
            )
            .unwrap();
            assert_bits_eq(
                &got.samples,
                want,
                &format!("stream normalize {name} {format}"),
            );
            assert_eq!(got.chunks, 12, "4096-sample chunks as usual");
        }
        send(
            &mut socket,
            json!({"type": "render", "genomeId": id, "duration": 1.0, "normalize": name,
                "batch": true}),
        );
        let got = read_batch(&mut socket, None, 1.0);
        assert_bits_eq(&got, want, &format!("batch normalize {name}"));
    }
}

#[test]
fn the_compressor_limits_before_normalization_per_request_and_by_default() {
    let id = "01M88X7XN81HEA58YYNTFXHV28";
    let req = request(1.0, 0.0, 0.5);
    let limited = limited_reference(id, &req);
    let mut limited_peak = limited.clone();
    peak_normalize(&mut limited_peak);
    let raw = reference(id, &req);
    assert!(
        limited.iter().fold(0f32, |m, s| m.max(s.abs()))
            < raw.iter().fold(0f32, |m, s| m.max(s.abs())) / 2.0,
        "the limiter must tame this genome's peaks"
    );
    for (flags, field, want_limited) in [
        (&[][..], None, false),
        (&[][..], Some(true), true),
        (&["--compressor"][..], None, true),
        (&["--compressor"][..], Some(false), false),
    ] {
        let server = ServerProcess::start(flags);
        let (mut socket, _) = client::connect(&server.url).unwrap();
        let mut message = json!({"type": "render", "genomeId": id, "duration": 1.0,
            "batch": true});
        let mut stream = json!({"type": "render", "genomeId": id, "duration": 1.0});
        if let Some(on) = field {
            message["compressor"] = json!(on);
            stream["compressor"] = json!(on);
        }
        send(&mut socket, message);
        let got = read_batch(&mut socket, None, 1.0);
        let streamed = client::render(&mut socket, &stream).unwrap().samples;
        let what = format!("{flags:?} compressor={field:?}");
        if want_limited {
            assert_bits_eq(&got, &limited_peak, &what);
            assert_bits_eq(&streamed, &limited, &what);
        } else {
            assert_bits_eq(&got, &peak_reference(id, &req), &what);
            assert_bits_eq(&streamed, &raw, &what);
        }
    }
    // The original's environment variable does what the flag does.
    let output = Command::new(env!("CARGO_BIN_EXE_kromosynth-render-socket"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("USE_COMPRESSOR"), "{help}");
}

#[test]
fn legacy_flags_and_playback_position_are_accepted_and_bad_values_named() {
    let server = ServerProcess::start(&[]);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    send(
        &mut socket,
        json!({"type": "render", "genomeId": GENOME, "duration": 0.5, "batch": true,
            "controlledResume": true, "legacyBatch": true, "batchChannels": 8,
            "requestId": "legacy"}),
    );
    send(
        &mut socket,
        json!({"type": "playback-position", "position": 0.25}),
    );
    let got = read_batch(&mut socket, Some(&json!("legacy")), 0.5);
    assert_bits_eq(
        &got,
        &peak_reference(GENOME, &request(0.5, 0.0, 0.5)),
        "legacy flags",
    );
    for (field, value) in [
        ("batch", json!("yes")),
        ("batchChannels", json!(0)),
        ("batchChannels", json!(33)),
        ("batchChannels", json!(2.5)),
        ("normalize", json!("loud")),
        ("normalize", json!(1)),
        ("compressor", json!("on")),
        ("legacyBatch", json!(1)),
        ("controlledResume", json!("no")),
    ] {
        let mut message = json!({"type": "render", "genomeId": GENOME, "duration": 0.5,
            "requestId": "bad"});
        message[field] = value.clone();
        send(&mut socket, message);
        let error = read_json(&mut socket).unwrap();
        assert_eq!(error["type"], "error", "{field}={value}: {error}");
        assert_eq!(error["requestId"], "bad", "{field}={value}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(field),
            "{field}={value}: {error}"
        );
    }
    // The connection is still usable, and playback-position never got an answer.
    assert_still_renders(&mut socket, "after");
}

#[test]
fn every_error_of_a_request_with_a_request_id_carries_it() {
    let server = ServerProcess::start(&["--max-duration", "10"]);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    for (message, needle) in [
        (
            json!({"type": "render", "genomeId": "01NOSUCHGENOME", "duration": 1, "requestId": 7, "batch": true}),
            "01NOSUCHGENOME",
        ),
        (
            json!({"type": "render", "genome": {"nonsense": true}, "duration": 1, "requestId": 7}),
            "",
        ),
        (
            json!({"type": "render", "genomeId": GENOME, "duration": 11, "requestId": 7}),
            "duration",
        ),
        (json!({"type": "dance", "requestId": 7}), "dance"),
        (json!({"type": "cancel", "requestId": 7}), "7"),
    ] {
        send(&mut socket, message.clone());
        let error = read_json(&mut socket).unwrap();
        assert_eq!(error["type"], "error", "{message}: {error}");
        assert_eq!(error["requestId"], 7, "{message}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(needle),
            "{message}: {error}"
        );
    }
}

#[test]
fn a_batch_client_that_leaves_before_its_frame_frees_the_render_quietly() {
    let server = ServerProcess::start(&[]);
    for _ in 0..4 {
        let (mut socket, _) = client::connect(&server.url).unwrap();
        send(
            &mut socket,
            json!({"type": "render", "genomeId": "01M88X99QVYYHHB5Y83SETHWK1", "duration": 30,
                "batch": true, "requestId": "gone"}),
        );
        drop(socket);
    }
    let stats = server.wait_for_no_renders(Duration::from_secs(20));
    assert_eq!(stats["renders"], 0, "{stats}");
    assert!(
        server.wait_for_log("outcome=disconnected", 4, Duration::from_secs(5)),
        "{}",
        server.log_text()
    );
    assert!(!server.log_text().contains("outcome=error"));
}

/// Node.js and the clients' `ws` package, or why they are missing.
fn node_clients() -> Result<std::path::PathBuf, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    if Command::new("node").arg("--version").output().is_err() {
        return Err("`node` is not installed".into());
    }
    if !dir.join("node_modules/ws").is_dir() {
        return Err("run `npm ci` in tests/clients (the ws package) first".into());
    }
    Ok(dir)
}

#[test]
fn composing_client_renders_every_fixture_genome() {
    let dir = match node_clients() {
        Ok(dir) => dir,
        Err(why) => return eprintln!("skipping composing_client: {why}"),
    };
    let server = ServerProcess::start(&[]);
    let wraps = ["none", "genome", "data", "string"];
    for (i, id) in genome_ids().iter().enumerate() {
        let (duration, note_delta, velocity) = (1.5, (i % 3) as f64 * 6.0 - 6.0, 1.0);
        let genome_file = fixtures::genome_path(id);
        let out =
            std::env::temp_dir().join(format!("krs-composing-{}-{i}.f32", std::process::id()));
        let output = Command::new("node")
            .current_dir(&dir)
            .arg("composing-client.js")
            .arg(&server.url)
            .arg(&genome_file)
            .args([
                duration.to_string(),
                note_delta.to_string(),
                velocity.to_string(),
            ])
            .arg(&out)
            .args(["--wrap", wraps[i % wraps.len()]])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "composing client, {id}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(report["sampleRate"], 48000);
        assert_eq!(
            report["messages"],
            json!(["welcome", "batch-result", "binary"])
        );
        let got = audio_file::read(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        let want = peak_reference(id, &request(duration, note_delta, velocity));
        assert_bits_eq(&got, &want, &format!("composing client {id}"));
    }
}

#[test]
fn browser_example_client_sends_playback_positions_without_errors() {
    let dir = match node_clients() {
        Ok(dir) => dir,
        Err(why) => return eprintln!("skipping browser_example_client: {why}"),
    };
    let server = ServerProcess::start(&[]);
    let out = std::env::temp_dir().join(format!("krs-browser-example-{}.f32", std::process::id()));
    let output = Command::new("node")
        .current_dir(&dir)
        .args(["browser-example-client.js", &server.url, GENOME, "2"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["errors"], json!([]));
    assert!(report["positionsSent"].as_u64().unwrap() >= 3, "{report}");
    let got = audio_file::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    assert_bits_eq(
        &got,
        &reference(GENOME, &request(2.0, 0.0, 0.5)),
        "browser example stream",
    );
}

use kromosynth_render_socket::audio_file;
