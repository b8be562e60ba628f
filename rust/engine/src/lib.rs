//! cryptgpu engine: three-party replicated secret sharing over Z_2^64
//! (ABY3-style). The layers are folders, each importing only those below
//! it (ARCHITECTURE.md): `ring` -> `device` (`cpu`, `cuda`) -> `net` ->
//! `protocol` -> `runtime`; `prg` and `error` are shared by all.

pub mod error;
pub mod prg;

pub mod device;
pub mod net;
pub mod protocol;
pub mod ring;
pub mod runtime;

pub use error::{EngineError, Result};
