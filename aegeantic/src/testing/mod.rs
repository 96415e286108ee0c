//! Test support (feature `fault-server`): a fault-injecting OpenAI-compatible server, which
//! plays a script or draws its faults at random, and a scripted server speaking Anthropic's
//! Messages format.

mod anthropic_server;
mod fault_server;
mod random_faults;
mod server;

pub use anthropic_server::{
    AnthropicEnd, AnthropicEvent, AnthropicReply, AnthropicRequest, AnthropicServer,
};
pub use fault_server::{FaultServer, RecordedRequest, Reply, SseChunk, StreamEnd};
pub use random_faults::{FaultMix, RandomFault, Served};
