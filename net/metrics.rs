//! Counters behind `GET /metrics`, in Prometheus' text exposition format.
//!
//! The event loop is the only thread that touches them (sessions update them through
//! [`crate::server::Shared`]), so they are plain integers: no atomics, no locks, and nothing
//! allocated when a chunk is counted. Text is built only when `/metrics` is asked for.

use std::fmt::Write as _;
use std::time::Duration;

use crate::session::Outcome;

/// Upper bounds (seconds) of the first-chunk latency histogram's buckets. The README's target
/// is p50 2 ms / p99 20 ms, so the buckets are dense there.
pub const FIRST_CHUNK_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Since start, unless the name says otherwise.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_accepted: u64,
    pub renders_started: u64,
    /// Indexed by [`outcome_index`]: complete, cancelled, disconnected, error.
    pub renders_ended: [u64; 4],
    pub chunks_sent: u64,
    /// Bytes of chunk frames (headers included) handed to sockets; text messages not counted.
    pub chunk_bytes_sent: u64,
    /// Per bucket of [`FIRST_CHUNK_BUCKETS`], not cumulative (cumulated when exposed), plus
    /// one for the renders slower than the last bound.
    first_chunk_buckets: [u64; FIRST_CHUNK_BUCKETS.len() + 1],
    first_chunk_sum: f64,
    /// WebSocket handshakes answered 403 for their `Origin`.
    pub refused_origins: u64,
    /// Plain HTTP requests answered, by status class (2xx, 4xx, other).
    pub http_requests: [u64; 3],
}

const OUTCOMES: [&str; 4] = ["complete", "cancelled", "disconnected", "error"];

fn outcome_index(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Complete => 0,
        Outcome::Cancelled => 1,
        Outcome::Disconnected => 2,
        Outcome::Failed(_) => 3,
    }
}

impl Metrics {
    pub fn render_ended(&mut self, outcome: &Outcome) {
        self.renders_ended[outcome_index(outcome)] += 1;
    }

    /// A chunk frame of `bytes` went to a socket; `first` is the render's time to it when it
    /// is the render's first.
    pub fn chunk_sent(&mut self, bytes: usize, first: Option<Duration>) {
        self.chunks_sent += 1;
        self.chunk_bytes_sent += bytes as u64;
        if let Some(latency) = first {
            let secs = latency.as_secs_f64();
            let bucket = FIRST_CHUNK_BUCKETS
                .iter()
                .position(|&bound| secs <= bound)
                .unwrap_or(FIRST_CHUNK_BUCKETS.len());
            self.first_chunk_buckets[bucket] += 1;
            self.first_chunk_sum += secs;
        }
    }

    pub fn http_answered(&mut self, status: u16) {
        let class = match status {
            200..=299 => 0,
            400..=499 => 1,
            _ => 2,
        };
        self.http_requests[class] += 1;
    }
}

/// Gauges read from the server when `/metrics` is asked for.
#[derive(Debug, Default)]
pub struct Gauges {
    pub connections: usize,
    pub renders: usize,
    pub parked: usize,
    pub queued: usize,
    pub starting: usize,
    pub cached_genomes: usize,
    pub worker_threads: usize,
    pub refused_connections: u64,
    pub stalled_renders: u64,
    pub idle_closed: u64,
}

/// The exposition text.
pub fn render(m: &Metrics, g: &Gauges) -> String {
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, value: &dyn std::fmt::Display| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    metric(
        "krs_connections",
        "gauge",
        "Open connections (WebSocket and plain HTTP).",
        &g.connections,
    );
    metric(
        "krs_connections_accepted_total",
        "counter",
        "Connections accepted.",
        &m.connections_accepted,
    );
    metric(
        "krs_connections_refused_total",
        "counter",
        "Connections closed at accept for being over a connection limit.",
        &g.refused_connections,
    );
    metric(
        "krs_origin_refused_total",
        "counter",
        "WebSocket handshakes refused (403) for an Origin not allowed.",
        &m.refused_origins,
    );
    metric(
        "krs_idle_closed_total",
        "counter",
        "Connections closed for being idle.",
        &g.idle_closed,
    );
    metric(
        "krs_renders_in_progress",
        "gauge",
        "Renders being streamed.",
        &g.renders,
    );
    metric(
        "krs_renders_parked",
        "gauge",
        "Renders parked on a full ring (their client is not reading).",
        &g.parked,
    );
    metric(
        "krs_renders_starting",
        "gauge",
        "Renders whose first chunk is not rendered yet (waiting for a worker, preparing, or rendering it).",
        &g.starting,
    );
    metric(
        "krs_renders_queued",
        "gauge",
        "Untagged renders queued behind another on their connection.",
        &g.queued,
    );
    metric(
        "krs_renders_started_total",
        "counter",
        "Renders started.",
        &m.renders_started,
    );
    metric(
        "krs_renders_stalled_total",
        "counter",
        "Renders dropped because their client read nothing for the stall timeout.",
        &g.stalled_renders,
    );
    metric(
        "krs_chunks_sent_total",
        "counter",
        "Chunk frames handed to sockets.",
        &m.chunks_sent,
    );
    metric(
        "krs_chunk_bytes_sent_total",
        "counter",
        "Bytes of chunk frames handed to sockets.",
        &m.chunk_bytes_sent,
    );
    metric(
        "krs_cached_genomes",
        "gauge",
        "Compiled genomes in the cache.",
        &g.cached_genomes,
    );
    metric(
        "krs_worker_threads",
        "gauge",
        "Render worker threads.",
        &g.worker_threads,
    );
    if let Some(secs) = worker_cpu_seconds() {
        metric(
            "krs_worker_cpu_seconds_total",
            "counter",
            "CPU time of the render workers; its rate over krs_worker_threads is their utilisation.",
            &secs,
        );
    }
    out.push_str(
        "# HELP krs_renders_ended_total Renders ended, by outcome.\n\
         # TYPE krs_renders_ended_total counter\n",
    );
    for (name, n) in OUTCOMES.iter().zip(m.renders_ended) {
        let _ = writeln!(out, "krs_renders_ended_total{{outcome=\"{name}\"}} {n}");
    }
    out.push_str(
        "# HELP krs_http_requests_total Plain HTTP requests answered, by status class.\n\
         # TYPE krs_http_requests_total counter\n",
    );
    for (class, n) in ["2xx", "4xx", "other"].iter().zip(m.http_requests) {
        let _ = writeln!(out, "krs_http_requests_total{{class=\"{class}\"}} {n}");
    }
    out.push_str(
        "# HELP krs_first_chunk_seconds Time from a render request to its first chunk frame.\n\
         # TYPE krs_first_chunk_seconds histogram\n",
    );
    let mut cumulative = 0;
    for (bound, n) in FIRST_CHUNK_BUCKETS.iter().zip(m.first_chunk_buckets) {
        cumulative += n;
        let _ = writeln!(
            out,
            "krs_first_chunk_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    cumulative += m.first_chunk_buckets[FIRST_CHUNK_BUCKETS.len()];
    let _ = writeln!(
        out,
        "krs_first_chunk_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n\
         krs_first_chunk_seconds_sum {}\n\
         krs_first_chunk_seconds_count {cumulative}",
        m.first_chunk_sum
    );
    out
}

/// CPU seconds (user + system) of the threads named `krs-worker-*`, from `/proc/self/task`
/// (Linux); read only when `/metrics` is asked for, so the workers pay nothing for it.
fn worker_cpu_seconds() -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return None;
    }
    let mut total: u64 = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let path = task.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        if !comm.starts_with("krs-worker-") {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces; fields count from after it.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
        let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) else {
            continue;
        };
        total += utime.parse::<u64>().unwrap_or(0) + stime.parse::<u64>().unwrap_or(0);
    }
    Some(total as f64 / ticks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_every_render() {
        let mut m = Metrics::default();
        m.chunk_sent(100, Some(Duration::from_micros(300)));
        m.chunk_sent(100, Some(Duration::from_millis(3)));
        m.chunk_sent(100, None);
        m.chunk_sent(100, Some(Duration::from_secs(9)));
        m.render_ended(&Outcome::Cancelled);
        let text = render(&m, &Gauges::default());
        assert!(text.contains("krs_first_chunk_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("krs_first_chunk_seconds_bucket{le=\"0.002\"} 1\n"));
        assert!(text.contains("krs_first_chunk_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("krs_first_chunk_seconds_bucket{le=\"5\"} 2\n"));
        assert!(text.contains("krs_first_chunk_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("krs_first_chunk_seconds_count 3\n"));
        assert!(text.contains("krs_chunks_sent_total 4\n"));
        assert!(text.contains("krs_chunk_bytes_sent_total 400\n"));
        assert!(text.contains("krs_renders_ended_total{outcome=\"cancelled\"} 1\n"));
        // Every sample line is `name{labels} value` with a numeric value.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
