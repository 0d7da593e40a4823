//! Plain HTTP on the service's ports: a request that does not ask for a WebSocket upgrade gets
//! an HTTP answer instead of a dropped connection. `GET /health` answers as the original PCM
//! server does (`{"status":"ok","timestamp":"<ISO 8601>"}`), so a proxy or an orchestrator can
//! check the process; everything else is 404, or 426 where a WebSocket was expected.
//!
//! Only the request head is looked at (bounded like the WebSocket handshake: 16 KiB, 10 s), and
//! every answer closes the connection.

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

/// The whole response to a plain HTTP request head.
pub fn respond(head: &[u8], now: SystemTime) -> Vec<u8> {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let parts: Vec<&str> = line.split(' ').collect();
    let well_formed = parts.len() == 3
        && !parts[0].is_empty()
        && parts[0].bytes().all(|b| b.is_ascii_uppercase())
        && parts[1].starts_with('/')
        && parts[2].starts_with("HTTP/1.");
    let (method, path) = if well_formed {
        (parts[0], parts[1].split('?').next().unwrap_or(""))
    } else {
        ("", "")
    };
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/health") => (
            "200 OK",
            "application/json",
            format!("{{\"status\":\"ok\",\"timestamp\":\"{}\"}}", iso8601(now)),
        ),
        ("GET" | "HEAD", "/") => (
            "426 Upgrade Required",
            "text/plain; charset=utf-8",
            "This is a WebSocket service: connect with a WebSocket client.\n".to_owned(),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "Not Found\n".to_owned(),
        ),
        ("", _) => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "Bad Request\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "Method Not Allowed\n".to_owned(),
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("426") {
        out.push_str("Upgrade: websocket\r\n");
    }
    if status.starts_with("405") {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if method != "HEAD" {
        out.push_str(&body);
    }
    out.into_bytes()
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

    fn answer(request: &str) -> String {
        String::from_utf8(respond(request.as_bytes(), UNIX_EPOCH)).unwrap()
    }

    #[test]
    fn health_and_the_rest() {
        let health = answer("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
        assert!(health.contains("Content-Type: application/json\r\n"));
        assert!(health.ends_with(r#"{"status":"ok","timestamp":"1970-01-01T00:00:00.000Z"}"#));
        let head = answer("HEAD /health?x=1 HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"));
        assert!(answer("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 426 "));
        assert!(answer("GET /../etc/passwd HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(answer("POST /health HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
        for bad in [
            "\r\n\r\n",
            "\x00\x01\x02 hello\r\n\r\n",
            "GET health HTTP/1.1\r\n\r\n",
        ] {
            assert!(answer(bad).starts_with("HTTP/1.1 400 "), "{bad:?}");
        }
    }
}
