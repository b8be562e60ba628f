//! cryptgpu engine: three-party replicated secret sharing over Z_2^64
//! (ABY3-style), with a fast CPU device, counted transports and the local
//! three-thread runtime. See DESIGN.md for the map of the layers.

pub mod error;
pub mod gemm;
pub mod prg;
pub mod ring;

pub use error::{EngineError, Result};
pub mod binary;
pub mod cuda;
pub mod device;
pub mod net;
pub mod noise;
pub mod protocol;
pub mod runtime;
pub mod tcp;
pub mod zmq;
