//! The wire protocol end to end, over real loopback sockets to the real server binary: the seed
//! messages, the opt-in extensions, and bit-exactness of the streamed audio against the batch
//! render of the same request.

mod common;

use common::*;
use kromosynth_render_socket::client::{self, read_json, Socket};
use serde_json::{json, Value};
use tungstenite::Message;

fn send(socket: &mut Socket, v: Value) {
    socket.send(Message::Text(v.to_string())).unwrap();
}

#[test]
fn seed_protocol_messages_and_bit_exact_json_chunks() {
    let server = ServerProcess::start(&[]);
    let (mut socket, welcome) = client::connect(&server.url).unwrap();
    assert_eq!(
        welcome,
        json!({"type": "welcome", "message": "Connected to Kromosynth Render Socket", "sampleRate": 48000})
    );
    // 1.01 s: the last chunk is partial.
    let duration = 1.01;
    send(
        &mut socket,
        json!({"type": "render", "genomeId": GENOME, "duration": duration, "noteDelta": 12, "velocity": 0.5, "useGPU": true}),
    );
    let want = reference(GENOME, &request(duration, 12.0, 0.5));
    let mut got = Vec::new();
    let mut index = 0;
    loop {
        let v = read_json(&mut socket).unwrap();
        match v["type"].as_str().unwrap() {
            "chunk" => {
                index += 1;
                assert_eq!(v["index"], index, "chunks count from 1");
                assert_eq!(v["sampleRate"], 48000);
                assert!(
                    v.get("requestId").is_none(),
                    "seed clients never see extensions"
                );
                let data = v["data"].as_array().unwrap();
                if got.len() + data.len() < want.len() {
                    assert_eq!(data.len(), 4096, "default chunk size of the original");
                }
                got.extend(data.iter().map(|x| x.as_f64().unwrap() as f32));
                assert_eq!(v["timestamp"].as_f64().unwrap(), got.len() as f64 / 48000.0);
            }
            "complete" => {
                assert_eq!(v["totalChunks"], index);
                assert_eq!(v["totalSamples"], want.len());
                assert_eq!(v["duration"], duration);
                assert_eq!(v["sampleRate"], 48000);
                let max = want.iter().fold(0f32, |m, &s| m.max(s));
                let min = want.iter().fold(0f32, |m, &s| m.min(s));
                assert_eq!(v["max"].as_f64().unwrap() as f32, max);
                assert_eq!(v["min"].as_f64().unwrap() as f32, min);
                assert_eq!(v["peak"].as_f64().unwrap() as f32, max.max(-min));
                assert!(v["renderMs"].as_f64().unwrap() >= 0.0);
                break;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(index, want.len().div_ceil(4096));
    assert_bits_eq(&got, &want, "json stream vs batch");
}

#[test]
fn every_fixture_streams_bit_exact_in_binary_and_json() {
    let server = ServerProcess::start(&[]);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    for id in genome_ids() {
        for (format, chunk) in [("binary", 384), ("json", 4096)] {
            let r = json!({"type": "render", "genomeId": id, "duration": 1, "velocity": 1,
                           "format": format, "chunkSamples": chunk, "seed": 3});
            let received = client::render(&mut socket, &r).unwrap();
            let mut req = request(1.0, 0.0, 1.0);
            req.seed = 3;
            assert_bits_eq(
                &received.samples,
                &reference(&id, &req),
                &format!("{id} {format}"),
            );
            assert_eq!(received.chunks, 48000usize.div_ceil(chunk));
        }
    }
}

#[test]
fn binary_frames_carry_the_documented_header() {
    let server = ServerProcess::start(&[]);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    send(
        &mut socket,
        json!({"type": "render", "requestId": "b1", "genomeId": GENOME, "duration": 0.1,
               "format": "binary", "chunkSamples": 1024}),
    );
    let start = read_json(&mut socket).unwrap();
    assert_eq!(start["type"], "start");
    assert_eq!(start["requestId"], "b1");
    assert_eq!(start["format"], "binary");
    assert_eq!(start["totalSamples"], 4800);
    let stream_id = start["streamId"].as_u64().unwrap() as u32;
    let mut offset = 0u64;
    let mut index = 0u32;
    loop {
        match socket.read().unwrap() {
            Message::Binary(frame) => {
                index += 1;
                assert_eq!(
                    u32::from_le_bytes(frame[0..4].try_into().unwrap()),
                    stream_id
                );
                assert_eq!(u32::from_le_bytes(frame[4..8].try_into().unwrap()), index);
                assert_eq!(u64::from_le_bytes(frame[8..16].try_into().unwrap()), offset);
                let n = (frame.len() - 16) / 4;
                assert!(n == 1024 || offset + n as u64 == 4800);
                offset += n as u64;
            }
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["type"], "complete", "{v}");
                assert_eq!(v["requestId"], "b1");
                assert_eq!(v["totalChunks"], index);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(offset, 4800);
}

#[test]
fn concurrent_renders_with_request_ids_on_one_connection() {
    let server = ServerProcess::start(&[]);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    let ids = deterministic_ids();
    let jobs: Vec<(String, String)> = ids
        .iter()
        .take(4)
        .enumerate()
        .map(|(i, g)| (format!("r{i}"), g.clone()))
        .collect();
    for (rid, g) in &jobs {
        send(
            &mut socket,
            json!({"type": "render", "requestId": rid, "genomeId": g, "duration": 2, "chunkSamples": 1024}),
        );
    }
    let mut streams: std::collections::HashMap<String, Vec<f32>> = Default::default();
    let mut done = 0;
    let mut order = Vec::new();
    while done < jobs.len() {
        let v = read_json(&mut socket).unwrap();
        let rid = v["requestId"]
            .as_str()
            .expect("every message echoes requestId")
            .to_string();
        order.push(rid.clone());
        match v["type"].as_str().unwrap() {
            "chunk" => streams
                .entry(rid)
                .or_default()
                .extend(json_chunk_samples(&v)),
            "complete" => done += 1,
            other => panic!("{other}: {v}"),
        }
    }
    for (rid, g) in &jobs {
        assert_bits_eq(&streams[rid], &reference(g, &request(2.0, 0.0, 0.5)), rid);
    }
    // Interleaved, not one after the other: some other stream's message comes between the
    // first and the last message of the first stream.
    let first = &order[0];
    let last_of_first = order.iter().rposition(|r| r == first).unwrap();
    assert!(
        order[..last_of_first].iter().any(|r| r != first),
        "streams were not concurrent"
    );
}

#[test]
fn renders_without_request_id_run_one_after_the_other() {
    let server = ServerProcess::start(&[]);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    let ids = deterministic_ids();
    for g in ids.iter().take(2) {
        send(
            &mut socket,
            json!({"type": "render", "genomeId": g, "duration": 0.5}),
        );
    }
    for g in ids.iter().take(2) {
        let mut got = Vec::new();
        loop {
            let v = read_json(&mut socket).unwrap();
            match v["type"].as_str().unwrap() {
                "chunk" => got.extend(json_chunk_samples(&v)),
                "complete" => break,
                other => panic!("{other}: {v}"),
            }
        }
        assert_bits_eq(&got, &reference(g, &request(0.5, 0.0, 0.5)), g);
    }
}

#[test]
fn cancel_ends_a_render_and_the_connection_stays_usable() {
    let server = ServerProcess::start(&[]);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    send(
        &mut socket,
        json!({"type": "render", "requestId": 7, "genomeId": GENOME, "duration": 30}),
    );
    let first = read_json(&mut socket).unwrap();
    assert_eq!(first["type"], "chunk");
    send(&mut socket, json!({"type": "cancel", "requestId": 7}));
    let mut chunks_after = 0;
    loop {
        let v = read_json(&mut socket).unwrap();
        match v["type"].as_str().unwrap() {
            "chunk" => chunks_after += 1,
            "cancelled" => {
                assert_eq!(v["requestId"], 7);
                break;
            }
            other => panic!("{other}: {v}"),
        }
    }
    // Only what was already in flight: the ring and the socket buffers, far below the
    // 352 chunks of the whole render.
    assert!(chunks_after < 100, "{chunks_after} chunks after cancel");
    let v = {
        send(&mut socket, json!({"type": "cancel", "requestId": 7}));
        read_json(&mut socket).unwrap()
    };
    assert_eq!(v["type"], "error");
    assert!(v["message"].as_str().unwrap().contains("No render"), "{v}");
    let r = json!({"type": "render", "genomeId": GENOME, "duration": 0.25});
    let received = client::render(&mut socket, &r).unwrap();
    assert_bits_eq(
        &received.samples,
        &reference(GENOME, &request(0.25, 0.0, 0.5)),
        "after cancel",
    );
    assert!(server.wait_for_log("outcome=cancelled", 1, std::time::Duration::from_secs(5)));
}

#[test]
fn inline_genome_renders_like_the_stored_one() {
    let server = ServerProcess::start(&[]);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    let genome: Value = serde_json::from_slice(&genome_json(GENOME)).unwrap();
    let as_object = json!({"type": "render", "genome": genome, "duration": 0.5});
    let as_string = json!({"type": "render", "genome": genome.to_string(), "duration": 0.5});
    let want = reference(GENOME, &request(0.5, 0.0, 0.5));
    for r in [as_object, as_string] {
        let received = client::render(&mut socket, &r).unwrap();
        assert_bits_eq(&received.samples, &want, "inline genome");
    }
}

#[test]
fn pings_are_answered_while_idle() {
    let server = ServerProcess::start(&[]);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_mut() {
        // A lost pong fails the test instead of hanging it.
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
    }
    socket
        .send(Message::Ping(b"are you there".to_vec()))
        .unwrap();
    match socket.read().unwrap() {
        Message::Pong(payload) => assert_eq!(payload, b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

#[test]
fn queued_renders_never_interleave_their_messages() {
    let server = ServerProcess::start(&[]);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    // A failing render, then two binary ones, all without requestId: strictly one after another.
    send(
        &mut socket,
        json!({"type": "render", "genomeId": "NO_SUCH", "duration": 0.2, "format": "binary"}),
    );
    for _ in 0..2 {
        send(
            &mut socket,
            json!({"type": "render", "genomeId": GENOME, "duration": 0.2, "format": "binary"}),
        );
    }
    let mut events = Vec::new();
    while events.iter().filter(|e| *e == "complete").count() < 2 {
        match socket.read().unwrap() {
            Message::Binary(_) => {
                if events.last().map(String::as_str) != Some("chunk") {
                    events.push("chunk".to_string());
                }
            }
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                events.push(v["type"].as_str().unwrap().to_string());
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        events,
        // The failing render was announced (`start`) before its genome was looked up.
        ["start", "error", "start", "chunk", "complete", "start", "chunk", "complete"],
        "each render's messages end before the next one's begin"
    );
}

#[test]
fn a_stream_at_another_rate_says_so_in_every_message() {
    let server = ServerProcess::start(&[]);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    for format in ["json", "binary"] {
        let got = client::render(
            &mut socket,
            &json!({"type": "render", "genomeId": GENOME, "duration": 1.1, "sampleRate": 16000,
                "noteDelta": 5, "format": format, "requestId": format}),
        )
        .unwrap();
        let want = reference(
            GENOME,
            &krs_engine::RenderRequest {
                sample_rate: 16_000,
                ..request(1.1, 5.0, 0.5)
            },
        );
        assert_bits_eq(&got.samples, &want, format);
        assert_eq!(got.complete["sampleRate"], 16000);
        assert_eq!(got.complete["totalSamples"], 17600);
    }
    send(
        &mut socket,
        json!({"type": "render", "genomeId": GENOME, "duration": 0.3, "sampleRate": 22050}),
    );
    let chunk = read_json(&mut socket).unwrap();
    assert_eq!(chunk["sampleRate"], 22050, "{chunk}");
    // serde_json parses floats fast, not always to the nearest double: compare closely.
    assert!((chunk["timestamp"].as_f64().unwrap() - 4096.0 / 22050.0).abs() < 1e-15);
    send(
        &mut socket,
        json!({"type": "render", "genomeId": GENOME, "duration": 1, "sampleRate": 4000,
            "requestId": "low"}),
    );
    loop {
        let v = read_json(&mut socket).unwrap();
        if v["type"] == "error" {
            assert!(v["message"].as_str().unwrap().contains("sampleRate"), "{v}");
            break;
        }
    }
}
