//! The deployment files in `net/deploy` agree with the server and with each other: the stop
//! signal starts the drain, every supervisor waits longer than the drain before it kills, and
//! every health check asks `/health`. (Their syntax is checked by `net/deploy/check.sh`;
//! HAProxy's config also runs in `tests/haproxy.rs`.)

use std::path::Path;

fn file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("net/deploy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The number after `key` on the first line holding it.
fn number_after(text: &str, key: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.contains(key))
        .unwrap_or_else(|| panic!("no {key}"));
    let rest = &line[line.find(key).unwrap() + key.len()..];
    let digits: String = rest
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {key} in {line:?}"))
}

#[test]
fn supervisors_wait_longer_than_the_drain() {
    let drain = 60; // the server's default --drain-timeout
    let unit = file("kromosynth-render-socket.service");
    assert_eq!(number_after(&unit, "DRAIN_TIMEOUT="), drain);
    assert!(number_after(&unit, "TimeoutStopSec=") > drain);
    assert!(unit.contains("KillSignal=SIGTERM"));
    assert!(unit.contains("Restart=on-failure"));
    assert!(unit.contains("Environment=DB_PATH="));
    assert!(number_after(&unit, "LimitNOFILE=") >= 4096 + 128);

    let k8s = file("kubernetes.yaml");
    assert!(number_after(&k8s, "terminationGracePeriodSeconds:") > drain);
    let drain_env = k8s.find("name: DRAIN_TIMEOUT").expect("DRAIN_TIMEOUT set");
    assert_eq!(number_after(&k8s[drain_env..], "value:"), drain);
    let probe = k8s.find("readinessProbe:").expect("a readiness probe");
    assert!(k8s[probe..].contains("path: /health"));

    let docker = file("Dockerfile");
    assert_eq!(number_after(&docker, "DRAIN_TIMEOUT="), drain);
    assert!(docker.contains("STOPSIGNAL SIGTERM"));
    assert!(docker.lines().any(|l| l.starts_with("USER ")));
    assert!(docker.contains("HEALTHCHECK") && docker.contains("/health"));
    assert_eq!(docker.lines().filter(|l| l.starts_with("FROM ")).count(), 2);

    let haproxy = file("haproxy.cfg");
    for needle in [
        "balance leastconn",
        "option httpchk GET /health",
        "timeout tunnel",
    ] {
        assert!(haproxy.contains(needle), "haproxy.cfg has {needle}");
    }
    // Longer than the longest stream and the server's idle timeout (300 s).
    assert!(number_after(&haproxy, "timeout tunnel") > 600);
    let mut directives = haproxy.lines().filter(|l| !l.trim_start().starts_with('#'));
    assert!(
        !directives.any(|l| l.contains("shutdown-sessions")),
        "a drain must not cut streams"
    );
}
