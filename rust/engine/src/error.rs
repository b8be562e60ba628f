//! Engine errors, one enum for the whole crate; the Python binding maps each
//! variant to its own exception class.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    /// Operand shapes that do not fit the operation.
    #[error("shape error: {0}")]
    Shape(String),
    /// A plaintext value that cannot be encoded in the ring (NaN, inf, too large).
    #[error("encoding error: {0}")]
    Encoding(String),
    /// A caller-side argument that is out of range (party index, stride, ...).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A peer closed its link, or did not answer within the timeout.
    #[error("peer error: {0}")]
    Peer(String),
    /// A system library or device the call needs is missing (CUDA, NVRTC),
    /// or a kernel failed to compile.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A device could not allocate a buffer (host memory or GPU memory).
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// A party thread panicked; a bug in the engine.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// The message to relay to another party (an abort's or a give-up's
    /// reason): a peer error's text without its "peer error: " prefix,
    /// which the receiving party's own error adds once (it read "party 1
    /// aborted: peer error: ..." at each relay, a probe); other kinds keep
    /// theirs, which say what failed.
    pub fn reason(&self) -> String {
        match self {
            EngineError::Peer(m) => m.clone(),
            other => other.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, EngineError>;

pub(crate) fn shape_err<T>(msg: impl Into<String>) -> Result<T> {
    Err(EngineError::Shape(msg.into()))
}

pub(crate) fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(EngineError::Invalid(msg.into()))
}
