//! Test support: a fault-injecting OpenAI-compatible server (feature `fault-server`).

mod fault_server;

pub use fault_server::{FaultServer, RecordedRequest, Reply, SseChunk, StreamEnd};
