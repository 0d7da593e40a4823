//! The player page (`GET /`) in a real browser: headless Chromium, driven over the DevTools
//! protocol, plays fixture genomes from the server binary, and the test compares what the page
//! received with the engine's own render of the same request (FNV-1a of the f32 bytes, as the
//! page computes it), checks that audio started, that the limiter's output stays under full
//! scale, that renders queued past the per-connection limit all complete, and that cancel works.
//!
//! Skips (passes, saying so) where `/usr/bin/chromium` is missing; `.ci/run` installs it.
//! `KRS_PLAYER_SCREENSHOT=<path.png>` also saves a screenshot of the page after a render.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const CHROMIUM: &str = "/usr/bin/chromium";

/// FNV-1a (32 bit) of the samples' little-endian f32 bytes: the page's `fnv1a`.
fn fnv1a(samples: &[f32]) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for s in samples {
        for b in s.to_le_bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    format!("{h:08x}")
}

/// Headless Chromium with a DevTools connection to its one page; killed on drop.
struct Browser {
    child: Child,
    profile: PathBuf,
    devtools: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Browser {
    fn launch() -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() {
            eprintln!(
                "SKIPPED: {CHROMIUM} is not installed (apt-get install chromium); \
                 the player page was not tested in a browser"
            );
            return None;
        }
        let profile = std::env::temp_dir().join(format!("krs-chromium-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--autoplay-policy=no-user-gesture-required",
                "--window-size=1000,800",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        // Chromium names its DevTools endpoint on stderr; the thread keeps draining stderr
        // afterwards so that the browser never blocks on a full pipe.
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let browser_url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium names its DevTools endpoint");
        let port: u16 = browser_url
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let page_url = page_target(port);
        let (devtools, _) = tungstenite::connect(page_url.as_str()).expect("DevTools connects");
        Some(Browser {
            child,
            profile,
            devtools,
            next_id: 1,
        })
    }

    /// Sends a DevTools command and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({"id": id, "method": method, "params": params});
        self.devtools
            .send(Message::Text(message.to_string()))
            .unwrap();
        loop {
            let Message::Text(text) = self.devtools.read().unwrap() else {
                continue;
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Opens `url` and waits (bounded) until the page says all its renders are settled; the
    /// page's result.
    fn play(&mut self, url: &str, limit: Duration) -> Value {
        self.call("Page.navigate", json!({"url": url}));
        let start = Instant::now();
        loop {
            let text = self.eval("document.getElementById('result')?.textContent ?? ''");
            if let Some(v) = text
                .as_str()
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
                .filter(|v| v["done"] == true)
            {
                return v;
            }
            assert!(
                start.elapsed() < limit,
                "{url}: the page did not finish within {limit:?}; last result {text}; status {}",
                self.eval("document.getElementById('status')?.textContent")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64_decode(shot["data"].as_str().unwrap());
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The DevTools WebSocket URL of the browser's page, from `/json/list`.
fn page_target(port: u16) -> String {
    let start = Instant::now();
    loop {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            tcp,
            "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = read_http_body(&mut tcp);
        if let Ok(Value::Array(targets)) = serde_json::from_str::<Value>(&body) {
            if let Some(url) = targets
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            {
                return url.to_owned();
            }
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no page: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The body of an HTTP answer, by its Content-Length: Chromium's DevTools server keeps the
/// connection open whatever the request says, so reading to the end would wait forever.
fn read_http_body(tcp: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tcp.read(&mut buf).unwrap();
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            if n == 0 || length.is_some_and(|len| body.len() >= len) {
                return body.to_owned();
            }
        }
        assert!(n > 0, "the connection closed mid-head");
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for group in bytes.chunks(4) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &v)| n | u32::from(v) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..group.len()]);
    }
    out
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn metrics(server: &ServerProcess) -> String {
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    answer
}

/// The fixture whose raw render reaches furthest past full scale: the one that needs the
/// page's limiter most.
fn loudest(duration: f64) -> (String, f32) {
    deterministic_ids()
        .into_iter()
        .map(|id| {
            let peak = reference(&id, &request(duration, 0.0, 0.5))
                .iter()
                .fold(0f32, |m, s| m.max(s.abs()));
            (id, peak)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
}

#[test]
fn the_player_page_plays_renders_bit_exact_and_limited_in_chromium() {
    let Some(mut browser) = Browser::launch() else {
        return;
    };
    let server = ServerProcess::start(&[]);
    let base = format!("http://{}/", server.addr);
    let limit = Duration::from_secs(90);

    // One render in each format; the second is of the loudest fixture.
    let (loud, loud_peak) = loudest(2.0);
    eprintln!("loudest fixture: {loud} (raw peak {loud_peak})");
    assert!(
        loud_peak > 2.0,
        "no fixture exercises the limiter: peak {loud_peak}"
    );
    for (genome, format) in [(GENOME.to_owned(), "json"), (loud.clone(), "binary")] {
        let url = format!(
            "{base}?autoplay=1&genome={genome}&duration=2&noteDelta=0&velocity=0.5&gpu=0&format={format}"
        );
        let result = browser.play(&url, limit);
        eprintln!("{format}: {result}");
        let job = &result["jobs"][0];
        let want = reference(&genome, &request(2.0, 0.0, 0.5));
        assert_eq!(job["state"], "complete", "{format}: {result}");
        assert_eq!(job["format"], format);
        assert_eq!(job["cancelled"], false);
        let first = job["firstAudioMs"].as_f64().expect("first audio arrived");
        assert!(first > 0.0 && first < 10_000.0, "{first}");
        assert_eq!(job["samples"], want.len(), "{format}");
        assert_eq!(
            job["hash"],
            fnv1a(&want),
            "{format}: samples differ from the engine's"
        );
        let peak = job["maxOutput"]
            .as_f64()
            .expect("the limiter's output was measured");
        assert!(peak > 0.0, "{format}: silent output");
        assert!(peak <= 1.0, "{format}: the output clips: peak {peak}");
        assert!(result["contextSampleRate"].as_f64().unwrap() > 0.0);
        if format == "json" {
            if let Some(path) = std::env::var_os("KRS_PLAYER_SCREENSHOT") {
                browser.screenshot(Path::new(&path));
            }
        }
    }

    // Twelve renders at once from one page: the page keeps at most 8 in flight (the server
    // refuses a ninth on one connection), and every one completes with the right samples.
    let url =
        format!("{base}?autoplay=1&genome={GENOME}&duration=0.5&gpu=0&format=binary&count=12");
    let result = browser.play(&url, limit);
    let want = fnv1a(&reference(GENOME, &request(0.5, 0.0, 0.5)));
    let jobs = result["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 12);
    for job in jobs {
        assert_eq!(job["state"], "complete", "{result}");
        assert_eq!(job["hash"], want, "{result}");
    }

    // Cancel after the first chunk of a long render: the page stops, the server says
    // `cancelled` and counts it, and far less than the render arrived.
    let url =
        format!("{base}?autoplay=1&genome={GENOME}&duration=120&gpu=0&format=binary&cancel=1");
    let result = browser.play(&url, limit);
    let job = &result["jobs"][0];
    assert_eq!(job["state"], "cancelled", "{result}");
    assert_eq!(job["cancelled"], true);
    let got = job["samples"].as_u64().unwrap();
    assert!(
        got > 0 && got < 120 * 48_000 / 2,
        "{got} samples arrived after cancel"
    );
    let text = metrics(&server);
    assert_eq!(
        metric(&text, "krs_renders_ended_total{outcome=\"cancelled\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "krs_renders_ended_total{outcome=\"complete\"}"),
        14.0
    );
    assert_eq!(
        metric(&text, "krs_renders_ended_total{outcome=\"error\"}"),
        0.0
    );
}
