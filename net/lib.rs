//! kromosynth-render-socket: the WebSocket render service, its wire protocol, its client and
//! its CLI's file output.

pub mod admission;
pub mod audio_file;
pub mod client;
pub mod fds;
pub mod genomes;
pub mod http;
pub mod malloc;
pub mod metrics;
pub mod protocol;
pub mod server;
mod session;
pub mod signals;
pub mod wire;
