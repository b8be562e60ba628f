//! Where the ROUTER socket listens (a Unix socket in a private directory,
//! reachable only through the frame guard) and the frame limit it is
//! guarded with.

use super::RouterSocket;
use crate::error::{EngineError, Result};
use crate::net::guard::InnerAddr;
use crate::net::tcp::largest_message;
#[cfg(not(unix))]
use std::net::SocketAddr;
use zeromq::Socket;

/// The largest ZeroMQ frame a party accepts: the largest message a
/// protocol sends (`frame::largest_message`), or
/// `CRYPTGPU_MAX_FRAME_BYTES`. Larger announced frames end the connection
/// before anything is allocated for them.
pub(super) fn max_frame_bytes() -> Result<u64> {
    frame_limit(std::env::var("CRYPTGPU_MAX_FRAME_BYTES").ok().as_deref())
}

/// The least frame limit taken: every frame of a session's start must
/// pass the guard (a neighbour's READY, its identity at most 200 bytes;
/// the Noise handshake's messages, under 150; a refusal, 2 +
/// `REFUSAL_TEXT` bytes). A limit of 0, which many tools read as "no
/// limit", was accepted, and every party's start then failed at the
/// timeout, blaming its neighbours (a user probe).
pub(super) const MIN_FRAME_BYTES: u64 = 1024;

/// `CRYPTGPU_MAX_FRAME_BYTES` read: unset, the largest message a protocol
/// sends; else a byte count of at least `MIN_FRAME_BYTES`.
pub(super) fn frame_limit(v: Option<&str>) -> Result<u64> {
    let Some(v) = v else {
        return Ok(largest_message());
    };
    match v.trim().parse::<u64>() {
        Ok(n) if n >= MIN_FRAME_BYTES => Ok(n),
        Ok(_) => Err(EngineError::Invalid(format!(
            "CRYPTGPU_MAX_FRAME_BYTES must be at least {MIN_FRAME_BYTES} bytes (the frames of \
             a session's start need that much; 0 does not mean \"no limit\": leave the \
             variable unset for the default, the largest message a protocol sends), got {v:?}"
        ))),
        Err(_) => Err(EngineError::Invalid(format!(
            "CRYPTGPU_MAX_FRAME_BYTES must be a byte count, got {v:?}"
        ))),
    }
}

/// A directory only this user can enter (mode 0700, an unpredictable name
/// under the temp directory), holding the ROUTER socket's Unix socket:
/// removed with everything in it on drop.
pub(crate) struct PrivateDir(pub(super) std::path::PathBuf);

impl PrivateDir {
    /// The socket's path inside the directory.
    #[cfg(unix)]
    pub(crate) fn socket(&self) -> std::path::PathBuf {
        self.0.join("r")
    }

    #[cfg(unix)]
    pub(super) fn create() -> std::io::Result<PrivateDir> {
        use std::os::unix::fs::DirBuilderExt;
        let mut base = std::env::temp_dir();
        // a Unix socket's path is at most 107 bytes
        if base.as_os_str().len() > 64 {
            base = "/tmp".into();
        }
        let mut last = None;
        for _ in 0..8 {
            let mut r = [0u8; 12];
            getrandom::getrandom(&mut r).map_err(std::io::Error::other)?;
            let dir = base.join(format!("cryptgpu-{}", crate::net::noise::hex(&r)));
            // create, never reuse: a directory someone else made would not be
            // private
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(PrivateDir(dir)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no private directory")))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Bind the ROUTER socket where only the frame guard can reach it: a Unix
/// socket in a private directory (Unix), else a loopback TCP port (which
/// any local process can reach).
#[cfg(unix)]
pub(super) fn bind_inner(
    rt: &tokio::runtime::Runtime,
    pull: &mut RouterSocket,
) -> std::io::Result<(InnerAddr, Option<PrivateDir>)> {
    let dir = PrivateDir::create()?;
    let path = dir.socket();
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    rt.block_on(pull.bind_listener(listener))
        .map_err(std::io::Error::other)?;
    Ok((InnerAddr::Unix(path), Some(dir)))
}

#[cfg(not(unix))]
pub(super) fn bind_inner(
    rt: &tokio::runtime::Runtime,
    pull: &mut RouterSocket,
) -> std::io::Result<(InnerAddr, Option<PrivateDir>)> {
    match rt.block_on(pull.bind("tcp://127.0.0.1:0")) {
        Ok(zeromq::Endpoint::Tcp(_, port)) => Ok((
            InnerAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], port))),
            None,
        )),
        Ok(other) => Err(std::io::Error::other(format!(
            "ROUTER socket bound to {other}, not TCP"
        ))),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

/// The error for a neighbour that encrypts its links (it sent a Noise
/// handshake or gave its handshakes up) talking to a party without keys.
pub(super) fn mode_mismatch(rank: usize, who: usize) -> EngineError {
    EngineError::Peer(format!(
        "party {rank}: party {who} encrypts its links (it sent a Noise handshake) while this \
         party runs without encryption (CRYPTGPU_INSECURE=1): all parties must agree"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0 (read as "no limit" by many tools) and any limit below the start's
    /// frames are refused, naming the variable and the least taken; a
    /// refusal, the start's largest frame, fits the least.
    #[test]
    fn a_frame_limit_below_the_start_is_refused() {
        assert_eq!(frame_limit(None).unwrap(), largest_message());
        assert_eq!(frame_limit(Some(" 4096 ")).unwrap(), 4096);
        assert_eq!(frame_limit(Some("1024")).unwrap(), MIN_FRAME_BYTES);
        for bad in ["0", "1", "1023"] {
            let e = frame_limit(Some(bad)).unwrap_err();
            assert!(matches!(e, EngineError::Invalid(_)), "{e}");
            let e = e.to_string();
            assert!(
                e.contains("CRYPTGPU_MAX_FRAME_BYTES") && e.contains("1024"),
                "{e}"
            );
        }
        for bad in ["-1", "abc", ""] {
            assert!(matches!(
                frame_limit(Some(bad)),
                Err(EngineError::Invalid(_))
            ));
        }
        assert!(2 + super::super::REFUSAL_TEXT as u64 <= MIN_FRAME_BYTES);
    }
}
