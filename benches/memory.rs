//! Server memory per idle connection and per active render (issue targets: at most 64 KiB and
//! 512 KiB): RSS of the server process before and after opening N idle WebSocket connections,
//! then with N renders in flight whose readers have stopped reading (each render is held at its
//! bounds: a full ring, a parked job, a bounded write buffer), per fixture genome and chunk
//! format. A stalled reader's connection also holds the chunk message its socket refused: about
//! 80 KB for a 4096-sample JSON chunk, 16 KiB for a binary one.
//!
//! `cargo bench --bench memory [-- --connections 1000 --renders 64 --duration 60]`

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::{fixtures, render_message, rss_kib, Args, ServerProcess};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn connect(addr: std::net::SocketAddr) -> Socket {
    let (mut socket, _) = tungstenite::connect(format!("ws://{addr}")).expect("connect");
    let welcome = socket.read().expect("welcome");
    assert!(matches!(welcome, Message::Text(_)));
    socket
}

/// RSS after the server has settled (the allocator returns nothing mid-run; wait for the
/// workers to park the stalled renders).
fn settled_rss(pid: u32) -> u64 {
    std::thread::sleep(Duration::from_millis(1500));
    rss_kib(pid)
}

fn main() {
    let args = Args::from_env();
    let connections: usize = args.num("--connections", 1000);
    let renders: usize = args.num("--renders", 64);
    let duration: f64 = args.num("--duration", 60.0);

    let server = ServerProcess::start(&["--quiet"]);
    let pid = server.pid();
    let base = settled_rss(pid);
    let idle: Vec<Socket> = (0..connections).map(|_| connect(server.addr)).collect();
    let with_idle = settled_rss(pid);
    let per_idle = (with_idle.saturating_sub(base)) as f64 / connections as f64;
    println!(
        "idle connections: {connections}, server RSS {base} -> {with_idle} KiB: {per_idle:.1} KiB per idle connection (target <= 64)"
    );
    drop(idle);

    println!(
        "\n| genome | format | renders in flight | RSS before KiB | RSS after KiB | KiB per render (target <= 512) |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for f in fixtures() {
        for binary in [true, false] {
            // A fresh server per cell, so one cell's allocations do not hide another's.
            let server = ServerProcess::start(&["--quiet"]);
            let pid = server.pid();
            // Warm: compile the genome and start the workers.
            let mut warm = connect(server.addr);
            warm.send(Message::Text(render_message(&f, false, 0.1, binary)))
                .unwrap();
            while !matches!(warm.read().unwrap(), Message::Text(t) if t.contains("\"complete\"")) {}
            let before = settled_rss(pid);
            let stalled: Vec<Socket> = (0..renders)
                .map(|_| {
                    let mut s = connect(server.addr);
                    s.send(Message::Text(render_message(&f, false, duration, binary)))
                        .unwrap();
                    s
                })
                .collect();
            let after = settled_rss(pid);
            println!(
                "| {} | {} | {renders} | {before} | {after} | {:.0} |",
                f.id,
                if binary { "binary" } else { "json" },
                after.saturating_sub(before) as f64 / renders as f64
            );
            drop(stalled);
        }
    }
}
