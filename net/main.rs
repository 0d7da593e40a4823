//! `kromosynth-render-socket`: the render service (`serve`, the default) and its tools
//! (`render`, `import`, `list`, `client`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kromosynth_render_socket::http::AllowedOrigins;
use kromosynth_render_socket::server::{Config, Server, Stopped};
use kromosynth_render_socket::{audio_file, client};
use krs_engine::{render_batch_with, CompiledGenome, CppnBackend, Gpu, RenderRequest};
use krs_storage::Genomes;
use serde_json::json;

#[derive(Parser)]
#[command(
    version,
    about = "Real-time WebSocket render service for kromosynth sound genomes"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve renders over WebSocket (the default).
    Serve(ServeArgs),
    /// Render one genome to a file.
    Render(RenderArgs),
    /// Import genome files (.json / .json.gz, kromosynth-cli shape) into a genomes.sqlite.
    Import {
        /// The database; created with the kromosynth-cli schema if missing.
        #[arg(long)]
        db: PathBuf,
        /// Genome files or directories (searched recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// List genome ids, one per line.
    List {
        /// A kromosynth-cli genomes.sqlite; the embedded default genomes when absent.
        #[arg(long, env = "DB_PATH")]
        db: Option<PathBuf>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Ask a running server for a render and report how it arrived.
    Client(ClientArgs),
}

#[derive(Args, Clone)]
struct ServeArgs {
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    host: String,
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    /// Also serve kromosynth-cli's render-worker protocol and the PCM protocol (no greeting)
    /// on this port; the original render worker listened on 30051.
    #[arg(long, env = "WORKER_PORT")]
    worker_port: Option<u16>,
    /// A kromosynth-cli genomes.sqlite; the embedded default genomes when absent.
    #[arg(long, env = "DB_PATH")]
    db: Option<PathBuf>,
    /// A folder of kromosynth-cli evolution run folders (`<dir>/<evoRunId>/genomes.sqlite`):
    /// render-worker requests with `genomeId` and `evoRunId` read their genome there.
    #[arg(long, env = "EVORUNS_DIR")]
    evoruns_dir: Option<PathBuf>,
    /// Longest render a client may request, in seconds.
    #[arg(long, env = "MAX_DURATION", default_value_t = krs_engine::DEFAULT_MAX_DURATION_SECONDS)]
    max_duration: f64,
    /// Most open connections (fewer when the file descriptor limit allows fewer).
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Most open connections from one IP address.
    #[arg(long, default_value_t = 1024)]
    max_connections_per_ip: usize,
    /// Seconds a connection may stay open with no render and no message.
    #[arg(long, default_value_t = 300)]
    idle_timeout: u64,
    /// Seconds a render may wait for its client to read before it is dropped.
    #[arg(long, default_value_t = 60)]
    stall_timeout: u64,
    /// Most renders in progress over all connections.
    #[arg(long, default_value_t = 4096)]
    max_renders: usize,
    /// Memory all renders may reserve together, in bytes or with K, M, G, T (default: half
    /// the physical memory).
    #[arg(long, value_parser = kromosynth_render_socket::admission::parse_bytes)]
    max_memory: Option<u64>,
    /// Memory one connection's renders may reserve (default: a quarter of --max-memory).
    #[arg(long, value_parser = kromosynth_render_socket::admission::parse_bytes)]
    max_memory_per_connection: Option<u64>,
    /// Render worker threads (0: one per core).
    #[arg(long, env = "THREADS", default_value_t = 0)]
    threads: usize,
    /// Cores that the renders in progress may need together to play in real time, by their
    /// measured cost; a render that would exceed it is refused as busy, with `retryAfter`
    /// (default: 0.8 x the worker threads, at most 0.8 x the cores the process may run on).
    #[arg(long, env = "CPU_BUDGET")]
    cpu_budget: Option<f64>,
    /// A new render is refused as busy, with `retryAfter` (a whole-result render waits), while
    /// a render accepted more than this many milliseconds ago has not rendered its first chunk
    /// (renders expected to prepare for longer than 50 ms aside); 0: never refuse for that.
    #[arg(long, env = "START_DELAY_MS", default_value_t = 25)]
    start_delay_ms: u64,
    /// Do not log one line per render.
    #[arg(long)]
    quiet: bool,
    /// Put the newest original server's limiter (a 0 dB DynamicsCompressor) before the output
    /// of renders that do not say `compressor`; also on when USE_COMPRESSOR is `true` or `1`,
    /// as in the original.
    #[arg(long)]
    compressor: bool,
    /// Web origins whose pages may open a WebSocket: `*` (any, as the original) or a comma
    /// list such as `https://example.org,http://localhost:8080`; a browser handshake from
    /// another origin gets HTTP 403. Clients that send no Origin header are not affected.
    #[arg(long, env = "ALLOWED_ORIGINS", default_value = "*")]
    allowed_origins: String,
    /// Seconds the renders in progress at SIGTERM or SIGINT may take to finish before the
    /// server stops anyway (a second signal stops it at once).
    #[arg(long, env = "DRAIN_TIMEOUT", default_value_t = 60.0)]
    drain_timeout: f64,
}

#[derive(Args)]
struct RenderArgs {
    /// A genome file (.json or .json.gz), or the id of a genome in the database.
    #[arg(long)]
    genome: String,
    /// A kromosynth-cli genomes.sqlite for ids; the embedded default genomes when absent.
    #[arg(long, env = "DB_PATH")]
    db: Option<PathBuf>,
    /// Seconds.
    #[arg(long)]
    duration: f64,
    /// Pitch shift in semitones.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    note_delta: f64,
    #[arg(long, default_value_t = 0.5)]
    velocity: f64,
    /// Seed of the noise outputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sample rate in Hz, 8000 to 192000.
    #[arg(long, default_value_t = krs_engine::DEFAULT_SAMPLE_RATE)]
    rate: u32,
    /// kromosynth's antiAliasing: the CPPN at twice the rate, low-passed.
    #[arg(long)]
    anti_aliasing: bool,
    /// kromosynth's frequencyUpdatesApplyToAllPathcNetworkOutputs: noteDelta transposes the
    /// value-curve outputs too.
    #[arg(long)]
    transpose_all_outputs: bool,
    /// Skip the original's batch normalization (what the stream carries).
    #[arg(long)]
    raw: bool,
    /// Output: .wav (32-bit float, mono, at the render's rate) or .f32 (raw little-endian).
    #[arg(long)]
    out: PathBuf,
    /// Evaluate the CPPN with Vulkan (any device, software ones included); fails without one.
    #[arg(long, conflicts_with = "cpu")]
    gpu: bool,
    /// Evaluate the CPPN on the CPU. Default: a real GPU if there is one, else the CPU.
    #[arg(long)]
    cpu: bool,
}

#[derive(Args)]
struct ClientArgs {
    genome_id: String,
    /// Seconds.
    #[arg(default_value_t = 5.0)]
    duration: f64,
    #[arg(long, default_value = "ws://127.0.0.1:8080")]
    url: String,
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    note_delta: f64,
    #[arg(long, default_value_t = 0.5)]
    velocity: f64,
    /// Ask for binary chunk frames instead of JSON.
    #[arg(long)]
    binary: bool,
    /// Apply the original's batch normalization before writing (equals `render` output).
    #[arg(long)]
    normalize: bool,
    /// Write the received audio (.wav or .f32).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Render(args)) => render(args),
        Some(Command::Import { db, paths }) => import(&db, &paths),
        Some(Command::List { db, limit }) => list(db.as_deref(), limit),
        Some(Command::Client(args)) => run_client(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    kromosynth_render_socket::malloc::keep_freed_memory();
    let mut server = Server::bind(Config {
        host: args.host,
        port: args.port,
        worker_port: args.worker_port,
        db: args.db,
        evoruns_dir: args.evoruns_dir,
        max_duration: args.max_duration,
        max_connections: args.max_connections,
        max_connections_per_ip: args.max_connections_per_ip,
        idle_timeout: std::time::Duration::from_secs(args.idle_timeout),
        stall_timeout: std::time::Duration::from_secs(args.stall_timeout),
        max_streams: args.max_renders,
        max_memory: args
            .max_memory
            .unwrap_or_else(kromosynth_render_socket::admission::default_max_memory),
        max_memory_per_connection: args.max_memory_per_connection.unwrap_or(
            args.max_memory
                .unwrap_or_else(kromosynth_render_socket::admission::default_max_memory)
                / kromosynth_render_socket::admission::DEFAULT_CONNECTION_SHARE,
        ),
        threads: args.threads,
        cpu_budget: args.cpu_budget,
        start_delay: (args.start_delay_ms > 0)
            .then(|| std::time::Duration::from_millis(args.start_delay_ms)),
        log_renders: !args.quiet,
        compressor: args.compressor
            || std::env::var("USE_COMPRESSOR").is_ok_and(|v| v == "true" || v == "1"),
        allowed_origins: AllowedOrigins::parse(&args.allowed_origins)
            .map_err(|e| format!("--allowed-origins: {e}"))?,
        drain_timeout: std::time::Duration::try_from_secs_f64(args.drain_timeout)
            .map_err(|e| format!("--drain-timeout: {e}"))?,
    })?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    // Tests and scripts read this line to learn the port (with --port 0).
    println!("listening on ws://{addr}");
    if let Some(worker) = server.worker_addr() {
        let worker = worker.map_err(|e| e.to_string())?;
        println!("render workers on ws://{worker}");
    }
    let _ = std::io::stdout().flush();
    server
        .handle_stop_signals()
        .map_err(|e| format!("cannot handle SIGTERM/SIGINT: {e}"))?;
    eprintln!(
        "serving {} with {} render workers; useGPU renders evaluate CPPNs on {}",
        server.genomes().source().describe(),
        server.worker_threads(),
        server.cppn_device()
    );
    let (connections, fds) = server.connection_limit();
    eprintln!(
        "open files: soft limit {} raised to {} (hard {}); at most {connections} connections",
        fds.before, fds.soft, fds.hard
    );
    match server
        .run()
        .map_err(|e| format!("event loop failed: {e}"))?
    {
        Stopped::Drained => Ok(()),
        Stopped::DrainTimedOut(n) => Err(format!(
            "drain timed out: {n} renders did not finish in --drain-timeout"
        )),
        Stopped::Forced(n) => Err(format!("stopped by a second signal: {n} renders cut off")),
    }
}

/// Genome JSON from a file path, or else from the database by id.
fn genome_json(genome: &str, db: Option<&Path>) -> Result<Vec<u8>, String> {
    let path = Path::new(genome);
    if path.is_file() {
        return krs_storage::read_genome_file(path).map_err(|e| format!("{genome}: {e}"));
    }
    Genomes::from_config(db)
        .and_then(|g| g.get(genome))
        .map_err(|e| e.to_string())
}

fn render(args: RenderArgs) -> Result<(), String> {
    let json = genome_json(&args.genome, args.db.as_deref())?;
    let genome = CompiledGenome::from_json(&json)
        .map_err(|e| format!("genome {} cannot be rendered: {e}", args.genome))?;
    let request = RenderRequest {
        duration: args.duration,
        note_delta: args.note_delta,
        velocity: args.velocity,
        seed: args.seed,
        sample_rate: args.rate,
        anti_aliasing: args.anti_aliasing,
        frequency_updates_apply_to_all_outputs: args.transpose_all_outputs,
        ..RenderRequest::default()
    };
    let backend = if args.gpu {
        CppnBackend::Gpu(Gpu::shared().map_err(|e| format!("--gpu: {e}"))?)
    } else if args.cpu {
        CppnBackend::Cpu
    } else {
        CppnBackend::auto()
    };
    // On a worker of the pool, as the server renders: the CPPN fills then run in place or on
    // the other workers instead of being handed over from this thread one by one.
    let samples = rayon::scope(|_| render_batch_with(&genome, &request, !args.raw, &backend))
        .map_err(|e| e.to_string())?;
    audio_file::write(&args.out, &samples, args.rate)
}

fn import(db: &Path, paths: &[PathBuf]) -> Result<(), String> {
    let report = krs_storage::import(db, paths).map_err(|e| e.to_string())?;
    for skipped in &report.skipped {
        eprintln!("skipped {}: {}", skipped.path.display(), skipped.reason);
    }
    println!(
        "imported {} genome(s) into {}{}",
        report.imported_count(),
        db.display(),
        if report.skipped_count() > 0 {
            format!(", skipped {}", report.skipped_count())
        } else {
            String::new()
        }
    );
    Ok(())
}

fn list(db: Option<&Path>, limit: Option<usize>) -> Result<(), String> {
    let genomes = Genomes::from_config(db).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    for id in genomes.list(limit).map_err(|e| e.to_string())? {
        if writeln!(out, "{id}").is_err() {
            break; // e.g. piped into `head`
        }
    }
    Ok(())
}

fn run_client(args: ClientArgs) -> Result<(), String> {
    let (mut socket, _) = client::connect(&args.url)?;
    let mut request = json!({
        "type": "render",
        "genomeId": args.genome_id,
        "duration": args.duration,
        "noteDelta": args.note_delta,
        "velocity": args.velocity,
    });
    if args.binary {
        request["format"] = json!("binary");
    }
    let mut received = client::render(&mut socket, &request)?;
    let _ = socket.close(None);
    let sample_rate = received.complete["sampleRate"]
        .as_u64()
        .map_or(krs_engine::DEFAULT_SAMPLE_RATE, |r| r as u32);
    println!(
        "first chunk after {:.1} ms",
        received.first_chunk.as_secs_f64() * 1e3
    );
    println!(
        "complete after {:.1} ms: {} chunks, {} samples ({:.2} s of audio), peak {}",
        received.total.as_secs_f64() * 1e3,
        received.chunks,
        received.samples.len(),
        received.samples.len() as f64 / sample_rate as f64,
        received.complete["peak"],
    );
    if let Some(out) = args.out {
        if args.normalize {
            krs_engine::render::normalize_like_original(&mut received.samples);
        }
        audio_file::write(&out, &received.samples, sample_rate)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}
