//! Plain HTTP on the service's ports: a request that does not ask for a WebSocket upgrade gets
//! an HTTP answer instead of a dropped connection. `GET /health` answers as the original PCM
//! server does (`{"status":"ok","timestamp":"<ISO 8601>"}`), so a proxy or an orchestrator can
//! check the process. The service port also serves `/` (the player page, built into the
//! binary), `/metrics` (Prometheus text) and `/genomes?limit=N&after=ID` (ids as JSON); the
//! worker port, whose clients are programs, answers `/` with 426. Everything else is 404, other
//! methods 405, a malformed request line 400.
//!
//! Only the request head is looked at (bounded like the WebSocket handshake: 16 KiB, 10 s), no
//! request body is read, and every answer closes the connection. Nothing is served from the
//! file system, so no path can reach a file.

use std::time::{SystemTime, UNIX_EPOCH};

/// Where a request head ends.
pub fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// Whether the request head asks for a WebSocket (an `Upgrade` header naming `websocket`);
/// such a request goes to the WebSocket handshake, which checks the rest.
pub fn is_websocket_upgrade(head: &[u8]) -> bool {
    let Ok(head) = std::str::from_utf8(head) else {
        return false;
    };
    head.split("\r\n").skip(1).any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("upgrade")
                && value
                    .split(',')
                    .any(|v| v.trim().eq_ignore_ascii_case("websocket"))
        })
    })
}

/// The value of header `name` in a request head (the first one, trimmed).
pub fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    let head = std::str::from_utf8(head).ok()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Which web origins may open a WebSocket (`--allowed-origins`): a browser sends its page's
/// origin with every handshake, so this keeps other sites' pages from using the service with
/// their visitors' browsers. Clients that send no `Origin` (every non-browser client) are not
/// affected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*`, the original's behaviour.
    #[default]
    Any,
    /// Exact origins (`scheme://host[:port]`), compared without case and trailing `/`.
    List(Vec<String>),
}

impl AllowedOrigins {
    /// `*`, or a comma-separated list of origins.
    pub fn parse(text: &str) -> Result<AllowedOrigins, String> {
        let items: Vec<String> = text
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        if items.iter().any(|o| o == "*") {
            return if items.len() == 1 {
                Ok(AllowedOrigins::Any)
            } else {
                Err("`*` cannot be combined with other origins".into())
            };
        }
        if items.is_empty() {
            return Err("no origin given (use `*` to allow every origin)".into());
        }
        if let Some(bad) = items.iter().find(|o| !o.contains("://")) {
            return Err(format!("{bad:?} is not an origin (scheme://host[:port])"));
        }
        Ok(AllowedOrigins::List(items))
    }

    /// Whether a handshake with this request head may go on.
    pub fn allows(&self, head: &[u8]) -> bool {
        match (self, header(head, "origin")) {
            (AllowedOrigins::Any, _) | (_, None) => true,
            (AllowedOrigins::List(list), Some(origin)) => {
                let origin = origin.trim_end_matches('/');
                list.iter().any(|o| o.eq_ignore_ascii_case(origin))
            }
        }
    }
}

/// What the service port serves besides `/health`; the event loop's state implements it.
pub trait Endpoints {
    /// The `/metrics` text.
    fn metrics(&self) -> String;
    /// At most `limit` genome ids after `after`, in id order.
    fn genomes(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, String>;
}

/// What `/health` says: a balancer takes an instance out of rotation on anything but 200, so
/// one that would refuse new renders, or is shutting down, says so before clients find out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// New renders would be refused (see `Shared::would_refuse`).
    Busy,
    /// Stopping: renders in progress finish, nothing new starts.
    Draining,
}

/// The player page, built into the binary: no file is ever read for a request.
pub const PLAYER_HTML: &str = include_str!("player.html");

/// Ids in one `/genomes` answer when the request names no `limit`, and at most.
pub const DEFAULT_GENOMES_LIMIT: usize = 100;
pub const MAX_GENOMES_LIMIT: usize = 1000;

/// A response: its status code and all its bytes.
pub struct Response {
    pub status: u16,
    pub bytes: Vec<u8>,
}

/// The whole response to a plain HTTP request head. `service` is `None` on the worker port,
/// which answers only `/health`.
pub fn respond(
    head: &[u8],
    now: SystemTime,
    health: Health,
    service: Option<&dyn Endpoints>,
) -> Response {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let parts: Vec<&str> = line.split(' ').collect();
    let well_formed = parts.len() == 3
        && !parts[0].is_empty()
        && parts[0].bytes().all(|b| b.is_ascii_uppercase())
        && parts[1].starts_with('/')
        && parts[2].starts_with("HTTP/1.");
    let (method, path, query) = if well_formed {
        let (path, query) = parts[1].split_once('?').unwrap_or((parts[1], ""));
        (parts[0], path, query)
    } else {
        ("", "", "")
    };
    const TEXT: &str = "text/plain; charset=utf-8";
    let (status, content_type, body): (u16, &str, Vec<u8>) = match (method, path, service) {
        ("GET" | "HEAD", "/health", _) => {
            let (status, word) = match health {
                Health::Ok => (200, "ok"),
                Health::Busy => (503, "busy"),
                Health::Draining => (503, "draining"),
            };
            let body = format!(
                "{{\"status\":\"{word}\",\"timestamp\":\"{}\"}}",
                iso8601(now)
            );
            (status, "application/json", body.into_bytes())
        }
        ("GET" | "HEAD", "/", Some(_)) => (
            200,
            "text/html; charset=utf-8",
            PLAYER_HTML.as_bytes().to_vec(),
        ),
        ("GET" | "HEAD", "/", None) => (
            426,
            TEXT,
            b"This is a WebSocket service: connect with a WebSocket client.\n".to_vec(),
        ),
        ("GET" | "HEAD", "/metrics", Some(service)) => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            service.metrics().into_bytes(),
        ),
        ("GET" | "HEAD", "/genomes", Some(service)) => match genomes_query(query) {
            Err(message) => (400, TEXT, format!("{message}\n").into_bytes()),
            Ok((after, limit)) => match service.genomes(after.as_deref(), limit) {
                Ok(ids) => {
                    // A full page may have more after it; `next` is where to go on.
                    let next = (ids.len() == limit).then(|| ids.last().cloned()).flatten();
                    let body = serde_json::json!({ "ids": ids, "next": next });
                    (200, "application/json", body.to_string().into_bytes())
                }
                Err(message) => (500, TEXT, format!("{message}\n").into_bytes()),
            },
        },
        ("GET" | "HEAD", _, _) => (404, TEXT, b"Not Found\n".to_vec()),
        ("", _, _) => (400, TEXT, b"Bad Request\n".to_vec()),
        _ => (405, TEXT, b"Method Not Allowed\n".to_vec()),
    };
    let mut extra = String::new();
    if status == 426 {
        extra.push_str("Upgrade: websocket\r\n");
    }
    if status == 503 {
        extra.push_str("Retry-After: 1\r\n");
    }
    if status == 405 {
        extra.push_str("Allow: GET, HEAD\r\n");
    }
    if content_type.starts_with("text/html") {
        // The page's script is inline and talks only to this server.
        extra.push_str(
            "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; \
             style-src 'unsafe-inline'; img-src data: blob:; media-src blob:; \
             connect-src 'self' ws: wss:\r\n",
        );
    }
    response(status, content_type, &extra, &body, method == "HEAD")
}

/// The answer to a WebSocket handshake whose `Origin` is not allowed.
pub fn forbidden_origin() -> Response {
    let body = b"Origin not allowed\n";
    response(403, "text/plain; charset=utf-8", "", body, false)
}

fn response(
    status: u16,
    content_type: &str,
    extra_headers: &str,
    body: &[u8],
    head_only: bool,
) -> Response {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    // A HEAD answer says how long the GET body is, and leaves it out.
    let mut bytes = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\
         {extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        bytes.extend_from_slice(body);
    }
    Response { status, bytes }
}

/// `limit` (1..=1000, default 100) and `after` (an id, percent-decoded) of a `/genomes` query.
fn genomes_query(query: &str) -> Result<(Option<String>, usize), String> {
    let (mut after, mut limit) = (None, DEFAULT_GENOMES_LIMIT);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_GENOMES_LIMIT).contains(n))
                    .ok_or_else(|| {
                        format!("limit must be an integer from 1 to {MAX_GENOMES_LIMIT}")
                    })?;
            }
            "after" => {
                let id = percent_decode(value).ok_or("after is not valid percent-encoded UTF-8")?;
                if id.len() > krs_storage::MAX_ID_LEN {
                    return Err(format!(
                        "after is longer than {} bytes",
                        krs_storage::MAX_ID_LEN
                    ));
                }
                after = Some(id);
            }
            _ => {}
        }
    }
    Ok((after, limit))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `2026-12-04T18:15:38.123Z`, as JavaScript's `Date.toISOString`.
pub fn iso8601(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (proleptic Gregorian), after Howard Hinnant's
    // `civil_from_days`.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_javascripts_iso_strings() {
        for (secs, millis, want) in [
            (0, 0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.005Z"),
            (1_796_408_138, 123, "2026-12-04T18:15:38.123Z"),
            (4_102_444_799, 999, "2099-12-31T23:59:59.999Z"),
        ] {
            let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis);
            assert_eq!(iso8601(t), want);
        }
    }

    #[test]
    fn upgrades_are_told_from_plain_requests() {
        let ws = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUPGRADE: WebSocket\r\n\r\n";
        assert!(is_websocket_upgrade(ws));
        assert!(!is_websocket_upgrade(
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        ));
        assert!(!is_websocket_upgrade(
            b"GET / HTTP/1.1\r\nX-Upgrade: websocket\r\n\r\n"
        ));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }

    struct Stub;
    impl Endpoints for Stub {
        fn metrics(&self) -> String {
            "krs_connections 1\n".into()
        }
        fn genomes(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, String> {
            let ids = ["a", "b", "c"];
            let from = after.map_or(0, |a| ids.partition_point(|id| *id <= a));
            Ok(ids[from..]
                .iter()
                .take(limit)
                .map(|s| s.to_string())
                .collect())
        }
    }

    fn answer_on(request: &str, service: Option<&dyn Endpoints>) -> String {
        String::from_utf8(respond(request.as_bytes(), UNIX_EPOCH, Health::Ok, service).bytes)
            .unwrap()
    }

    fn answer(request: &str) -> String {
        answer_on(request, Some(&Stub))
    }

    fn body(answer: &str) -> &str {
        answer.split_once("\r\n\r\n").unwrap().1
    }

    #[test]
    fn health_and_the_rest() {
        let health = answer("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
        assert!(health.contains("Content-Type: application/json\r\n"));
        assert!(health.ends_with(r#"{"status":"ok","timestamp":"1970-01-01T00:00:00.000Z"}"#));
        let head = answer("HEAD /health?x=1 HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"));
        assert!(answer_on("GET / HTTP/1.1\r\n\r\n", None).starts_with("HTTP/1.1 426 "));
        for (health, word) in [(Health::Busy, "busy"), (Health::Draining, "draining")] {
            let get = b"GET /health HTTP/1.1\r\n\r\n";
            let text = String::from_utf8(respond(get, UNIX_EPOCH, health, None).bytes).unwrap();
            assert!(
                text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
                "{text}"
            );
            assert!(text.contains("Retry-After: 1\r\n"), "{text}");
            assert!(text.ends_with(&format!(
                r#"{{"status":"{word}","timestamp":"1970-01-01T00:00:00.000Z"}}"#
            )));
        }
        assert!(answer_on("GET /metrics HTTP/1.1\r\n\r\n", None).starts_with("HTTP/1.1 404 "));
        assert!(answer("GET /../etc/passwd HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(answer("GET /player.html HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(answer("POST /health HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
        for bad in [
            "\r\n\r\n",
            "\x00\x01\x02 hello\r\n\r\n",
            "GET health HTTP/1.1\r\n\r\n",
        ] {
            assert!(answer(bad).starts_with("HTTP/1.1 400 "), "{bad:?}");
        }
    }

    #[test]
    fn page_metrics_and_genome_pages() {
        let page = answer("GET /?autoplay=1 HTTP/1.1\r\n\r\n");
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(page.contains("Content-Type: text/html; charset=utf-8\r\n"));
        assert_eq!(body(&page), PLAYER_HTML);
        let head = answer("HEAD / HTTP/1.1\r\n\r\n");
        assert!(head.contains(&format!("Content-Length: {}\r\n", PLAYER_HTML.len())));
        assert!(body(&head).is_empty());
        let metrics = answer("GET /metrics HTTP/1.1\r\n\r\n");
        assert!(metrics.contains("Content-Type: text/plain; version=0.0.4"));
        assert_eq!(body(&metrics), "krs_connections 1\n");
        for (query, want) in [
            ("", r#"{"ids":["a","b","c"],"next":null}"#),
            ("?limit=2", r#"{"ids":["a","b"],"next":"b"}"#),
            ("?limit=2&after=b", r#"{"ids":["c"],"next":null}"#),
            ("?after=%61", r#"{"ids":["b","c"],"next":null}"#),
        ] {
            let got = answer(&format!("GET /genomes{query} HTTP/1.1\r\n\r\n"));
            assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
            assert_eq!(body(&got), want, "{query}");
        }
        for bad in ["limit=0", "limit=1001", "limit=x", "after=%zz", "after=%ff"] {
            let got = answer(&format!("GET /genomes?{bad} HTTP/1.1\r\n\r\n"));
            assert!(got.starts_with("HTTP/1.1 400 "), "{bad}: {got}");
        }
    }

    #[test]
    fn origins() {
        let head = |origin: &str| format!("GET / HTTP/1.1\r\nOrigin: {origin}\r\n\r\n");
        let list = AllowedOrigins::parse("https://a.example, http://localhost:8080/").unwrap();
        assert!(list.allows(head("https://A.example").as_bytes()));
        assert!(list.allows(head("http://localhost:8080").as_bytes()));
        assert!(!list.allows(head("http://localhost:8081").as_bytes()));
        assert!(!list.allows(head("null").as_bytes()));
        assert!(
            list.allows(b"GET / HTTP/1.1\r\n\r\n"),
            "no Origin: not a browser"
        );
        assert_eq!(AllowedOrigins::parse(" * ").unwrap(), AllowedOrigins::Any);
        assert!(AllowedOrigins::Any.allows(head("http://evil.example").as_bytes()));
        for bad in ["", "*,http://a", "example.com"] {
            assert!(AllowedOrigins::parse(bad).is_err(), "{bad:?}");
        }
        assert!(forbidden_origin()
            .bytes
            .starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
    }
}
