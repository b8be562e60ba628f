//! A bound in front of the `zeromq` crate (issue 16): that crate's frame
//! decoder reserves whatever length a ZMTP frame header announces, before
//! anything is authenticated, so one forged header (2^62 bytes) from anyone
//! who can reach the port aborts the process. The party's public port is
//! therefore this guard, which accepts connections, reads the ZMTP stream
//! far enough to know every frame's length (64-byte greeting, then per
//! frame a flags byte and a 1- or 8-byte length), drops a connection that
//! announces a frame above the limit, and forwards everything else to the
//! party's ROUTER socket, a large frame split into frames that grow with
//! the bytes that arrived (`zmtp.rs`): the crate reserves what a header
//! announces, so a header of the full limit from a connection allowed it
//! made the party reserve that much before any byte of the body came.
//! Memory per connection is one fixed buffer; the number of connections is
//! bounded.
//!
//! The ROUTER socket itself must be out of everyone else's reach, or the
//! guard is bypassed: on Unix it listens on a Unix socket in a private
//! directory (`InnerAddr::Unix`, made by zmq/inner.rs); a loopback TCP port
//! (`InnerAddr::Tcp`) could be reached by any local process, which could
//! then abort the party with one forged frame header.

use crate::error::{EngineError, Result};
use crate::net::zmtp::{advance, only_input, write_pieces, Piece, Zmtp, GREETING};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Connections forwarded at once; the parties need two, the rest are
/// strangers (or a neighbour reconnecting) and are refused beyond this.
const MAX_CONNECTIONS: usize = 8;

/// The largest frame a connection may announce on encrypted links before
/// its socket identity proved a party's key: nobody who cannot prove one
/// has anything to send (the Noise layer drops it), and the `zeromq` crate
/// reserves what a header announces, so the protocol's limit (16 GiB) let
/// a stranger make every party allocate it, or abort, with one header.
pub const UNPROVED_MAX_FRAME: u64 = 64 * 1024;

/// Where the guard forwards its connections: the party's ROUTER socket.
#[derive(Clone, Debug)]
pub enum InnerAddr {
    /// A TCP port (loopback): reachable by every local process, so only for
    /// tests and non-Unix targets.
    Tcp(SocketAddr),
    /// A Unix socket, in a directory only this user can enter.
    #[cfg(unix)]
    Unix(std::path::PathBuf),
}

impl From<SocketAddr> for InnerAddr {
    fn from(a: SocketAddr) -> Self {
        InnerAddr::Tcp(a)
    }
}

/// A byte stream the guard can forward to and from (TCP or Unix socket).
trait Stream: Read + Write + Send + Sized + 'static {
    fn try_clone(&self) -> std::io::Result<Self>;
    fn shutdown(&self, how: Shutdown) -> std::io::Result<()>;
}

impl Stream for TcpStream {
    fn try_clone(&self) -> std::io::Result<Self> {
        TcpStream::try_clone(self)
    }
    fn shutdown(&self, how: Shutdown) -> std::io::Result<()> {
        TcpStream::shutdown(self, how)
    }
}

#[cfg(unix)]
impl Stream for UnixStream {
    fn try_clone(&self) -> std::io::Result<Self> {
        UnixStream::try_clone(self)
    }
    fn shutdown(&self, how: Shutdown) -> std::io::Result<()> {
        UnixStream::shutdown(self, how)
    }
}

/// Counters of what the guard refused (for tests and logs).
#[derive(Default)]
pub struct GuardStats {
    /// Connections dropped for announcing a frame above the limit.
    pub oversized: AtomicU64,
    /// Connections refused because too many were open.
    pub refused: AtomicU64,
    /// Connections cut to make room for a newcomer when all slots were
    /// taken: on encrypted links the oldest past its ZMTP handshake whose
    /// identity proved no key, else the oldest still in its handshake.
    pub evicted: AtomicU64,
    /// Connections that proved a party's key cut for a frame above the
    /// limit (`oversized_reason` says why).
    pub proved_oversized: AtomicU64,
    /// Connections refused for not opening with a ZMTP handshake in time
    /// (or with an identity longer than 200 bytes).
    pub impostors: AtomicU64,
}

pub struct FrameGuard {
    public: SocketAddr,
    max_frame: u64,
    stop: Arc<AtomicBool>,
    pub stats: Arc<GuardStats>,
    /// The accepting thread, which owns the listener: joined on drop, so
    /// that the port is free when the session is closed (a second init()
    /// in the same process got "Address already in use").
    accept: Option<thread::JoinHandle<()>>,
}

pub use crate::net::zmtp::{forwarded, stream_within_limit};

/// Why the frame guard cut a connection that proved a party's key for a
/// frame above `limit`: a limit set below the largest message the
/// protocol sends is too small; at it (the default) or above, no party
/// sends such a frame, so its header was corrupted or tampered with on
/// the way (a user probe flipped one bit of a length on the wire, and was
/// told to raise CRYPTGPU_MAX_FRAME_BYTES).
pub(crate) fn oversized_reason(limit: u64) -> String {
    let largest = crate::net::tcp::largest_message();
    if limit < largest {
        format!(
            "this party's frame guard cut a neighbour's connection for a message above the \
             frame limit of {limit} bytes (CRYPTGPU_MAX_FRAME_BYTES is too small for this \
             program)"
        )
    } else {
        format!(
            "this party's frame guard cut a neighbour's connection for a frame above the \
             largest message the protocol sends ({largest} bytes): the stream was corrupted \
             or tampered with on the way"
        )
    }
}

/// Where the first frame's body lies in a stream's `head` (greeting, then
/// the frame's flags and length): `Ok(Some((start, len)))` once its header
/// has arrived, `Ok(None)` before, `Err(())` when the first frame is not a
/// command (so the stream is not a ZMTP handshake).
fn first_frame(head: &[u8]) -> std::result::Result<Option<(usize, usize)>, ()> {
    let Some(&flags) = head.get(GREETING) else {
        return Ok(None);
    };
    if flags & 0b100 == 0 {
        return Err(());
    }
    let long = flags & 0b10 != 0;
    let lenb = if long { 8 } else { 1 };
    let Some(l) = head.get(GREETING + 1..GREETING + 1 + lenb) else {
        return Ok(None);
    };
    let len = if long {
        let b: [u8; 8] = l.try_into().map_err(|_| ())?;
        usize::try_from(u64::from_be_bytes(b)).map_err(|_| ())?
    } else {
        usize::from(l[0])
    };
    Ok(Some((GREETING + 1 + lenb, len)))
}

/// The socket identity announced by a stream's greeting and first command
/// (None when it is not a complete ZMTP handshake), for the fuzz target.
pub fn identity_of_head(head: &[u8]) -> Option<Vec<u8>> {
    let (start, len) = first_frame(head).ok()??;
    ready_identity(head.get(start..start.checked_add(len)?)?)
}

/// The greeting and the first command (READY, with the peer's socket
/// identity) must arrive within this time and size.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
const HEAD_MAX: usize = 4096;

/// Read the greeting and the first frame, which ZMTP 3 makes the READY
/// command, into `head`; return the socket identity it announces (empty
/// when none), or None for a stream that is not a ZMTP handshake.
fn read_head(from: &mut TcpStream, head: &mut Vec<u8>) -> Option<Vec<u8>> {
    from.set_read_timeout(Some(HEAD_TIMEOUT)).ok()?;
    let mut buf = [0u8; 512];
    loop {
        if let Some((start, len)) = first_frame(head).ok()? {
            let end = start.checked_add(len).filter(|&e| e <= HEAD_MAX)?;
            if head.len() >= end {
                break;
            }
        }
        if head.len() >= HEAD_MAX {
            return None;
        }
        let n = from.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    from.set_read_timeout(None).ok()?;
    identity_of_head(head)
}

/// The longest socket identity the guard forwards (ZMTP allows 255 bytes;
/// the guard appends a tag of at most 21).
const MAX_IDENTITY: usize = 200;

/// A command body's name and its properties, in order (ZMTP 3: a name
/// length byte and the name, then per property a key length byte, the key,
/// a 4-byte big-endian value length and the value). None if malformed.
type Properties<'a> = (&'a [u8], Vec<(&'a [u8], &'a [u8])>);

fn command_properties(body: &[u8]) -> Option<Properties<'_>> {
    let name_len = usize::from(*body.first()?);
    let name = body.get(1..1 + name_len)?;
    let mut rest = &body[1 + name_len..];
    let mut props = Vec::new();
    while !rest.is_empty() {
        let k = usize::from(rest[0]);
        let key = rest.get(1..1 + k)?;
        let vl: [u8; 4] = rest.get(1 + k..5 + k)?.try_into().ok()?;
        let vl = u32::from_be_bytes(vl) as usize;
        let value = rest.get(5 + k..(5 + k).checked_add(vl)?)?;
        props.push((key, value));
        rest = &rest[5 + k + vl..];
    }
    Some((name, props))
}

/// `head` with the first frame's READY Identity property replaced by
/// `id` (the greeting and any bytes after the frame unchanged), the frame
/// header re-encoded for the new length. None when the head is not a
/// complete READY.
pub fn with_identity(head: &[u8], id: &[u8]) -> Option<Vec<u8>> {
    let (start, len) = first_frame(head).ok()??;
    let end = start.checked_add(len)?;
    let (name, props) = command_properties(head.get(start..end)?)?;
    let mut body = vec![name.len() as u8];
    body.extend_from_slice(name);
    for (key, value) in props {
        let v = if key.eq_ignore_ascii_case(b"Identity") {
            id
        } else {
            value
        };
        body.push(key.len() as u8);
        body.extend_from_slice(key);
        body.extend_from_slice(&(v.len() as u32).to_be_bytes());
        body.extend_from_slice(v);
    }
    let mut out = head.get(..GREETING)?.to_vec();
    if body.len() > 255 {
        out.push(0b110);
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    } else {
        out.push(0b100);
        out.push(body.len() as u8);
    }
    out.extend_from_slice(&body);
    out.extend_from_slice(head.get(end..)?);
    Some(out)
}

/// The Identity property of a READY command body (empty without one).
fn ready_identity(body: &[u8]) -> Option<Vec<u8>> {
    let (name, props) = command_properties(body)?;
    if name != b"READY" {
        return None;
    }
    let found = props
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(b"Identity"));
    Some(found.map(|(_, v)| v.to_vec()).unwrap_or_default())
}

/// Forward `from` to `to`, checking frame lengths and splitting large
/// frames (`zmtp::advance`) when `max` is given; `head` holds bytes
/// already read from `from`. Returns false if the stream was cut for an
/// oversized frame.
fn pump<A: Stream, B: Stream>(mut from: A, mut to: B, max: Option<u64>, head: &[u8]) -> bool {
    let mut state = Zmtp::new();
    let mut pieces: Vec<Piece> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    // what to write for `bytes`: themselves when there is no limit, or
    // when they are one run of a frame's body (no copy)
    let mut forward = |bytes: &[u8], to: &mut B| -> std::result::Result<bool, ()> {
        let Some(m) = max else {
            return to.write_all(bytes).map(|_| true).map_err(|_| ());
        };
        pieces.clear();
        if !advance(&mut state, bytes, m, |p| pieces.push(p)) {
            return Ok(false);
        }
        let w = match only_input(bytes, &pieces) {
            Some(run) => to.write_all(run),
            None => {
                out.clear();
                write_pieces(bytes, &pieces, &mut out);
                to.write_all(&out)
            }
        };
        w.map(|_| true).map_err(|_| ())
    };
    let mut ok = match forward(head, &mut to) {
        Ok(true) => None,
        Ok(false) => Some(false),
        Err(()) => Some(true),
    };
    let mut buf = vec![0u8; 64 * 1024];
    while ok.is_none() {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        ok = match forward(&buf[..n], &mut to) {
            Ok(true) => None,
            Ok(false) => Some(false),
            Err(()) => Some(true),
        };
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    ok.unwrap_or(true)
}

/// Connections that may be cut to make room, oldest first (by number):
/// those still in their ZMTP handshake and, on encrypted links, those whose
/// socket identity proved no key. Each entry: the number, the stream, and
/// whether it is past its handshake without a proof (a stranger for sure,
/// so cut before any still in its handshake, which may be a party's).
type Evictable = Mutex<VecDeque<(u64, TcpStream, bool)>>;

/// Checks a socket identity announced in a READY command: the party's
/// plain identity when the claim proves it (on encrypted links, a tag only
/// a holder of the party's key can make; net/noise.rs `identity_tag`),
/// None otherwise.
pub type Verifier = Arc<dyn Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync>;

fn forget(evictable: &Evictable, n: u64) {
    if let Ok(mut q) = evictable.lock() {
        q.retain(|(m, _, _)| *m != n);
    }
}

/// Connection `n` finished its handshake without proving a key: cut it
/// before any connection still in its handshake.
fn unproved(evictable: &Evictable, n: u64) {
    if let Ok(mut q) = evictable.lock() {
        if let Some(e) = q.iter_mut().find(|e| e.0 == n) {
            e.2 = true;
        }
    }
}

/// One connection: its handshake read and checked, its socket identity
/// made unique (the claim plus `#` and the connection's number), then both
/// directions forwarded. The identity a stranger claims is not proof of
/// anything (the Noise layer authenticates every message), but ZeroMQ keys
/// its peers by it: a newcomer with a live peer's identity would displace
/// it, and refusing the newcomer instead let a stranger who came first keep
/// the real party out. With unique identities both stay connected, and what
/// the stranger sends fails authentication and is dropped.
fn serve(
    client: TcpStream,
    inner: &InnerAddr,
    max_frame: u64,
    st: &GuardStats,
    n: u64,
    evictable: &Evictable,
    verify: Option<&Verifier>,
) {
    match inner {
        InnerAddr::Tcp(a) => match TcpStream::connect(a) {
            Ok(server) => {
                let _ = server.set_nodelay(true);
                forward(client, server, max_frame, st, n, evictable, verify)
            }
            Err(_) => {
                let _ = client.shutdown(Shutdown::Both);
            }
        },
        #[cfg(unix)]
        InnerAddr::Unix(path) => match UnixStream::connect(path) {
            Ok(server) => forward(client, server, max_frame, st, n, evictable, verify),
            Err(_) => {
                let _ = client.shutdown(Shutdown::Both);
            }
        },
    }
}

/// `serve` once the inner connection is made.
fn forward<S: Stream>(
    mut client: TcpStream,
    server: S,
    max_frame: u64,
    st: &GuardStats,
    n: u64,
    evictable: &Evictable,
    verify: Option<&Verifier>,
) {
    // The zeromq side speaks first too: let its greeting through while the
    // client's handshake is read.
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let out = thread::Builder::new()
        .name("cryptgpu-guard-out".into())
        .spawn(move || pump(s2, c2, None, &[]));
    let mut head = Vec::new();
    if let (Ok(mut q), Ok(c)) = (evictable.lock(), client.try_clone()) {
        q.push_back((n, c, false));
    }
    let claim = read_head(&mut client, &mut head);
    // Without a verifier (unencrypted links) nothing can be proved: a
    // connection is safe from eviction once its handshake is through. With
    // one, only a connection whose identity proves a party's key is; the
    // others (strangers) stay evictable and are marked with a leading `~`,
    // so that no claim of theirs reads as a party's.
    let mut limit = max_frame;
    let mut proved = false;
    let claim = match (claim, verify) {
        (None, _) => None,
        (Some(id), _) if id.len() > MAX_IDENTITY => None,
        (Some(id), None) => {
            forget(evictable, n);
            // nothing is proved unencrypted; a party's claim is taken as one
            proved = id.starts_with(b"cryptgpu-party-");
            Some(id)
        }
        (Some(id), Some(v)) => match v(&id) {
            Some(party) => {
                forget(evictable, n);
                proved = true;
                Some(party)
            }
            None => {
                unproved(evictable, n);
                limit = limit.min(UNPROVED_MAX_FRAME);
                Some(if id.is_empty() {
                    id
                } else {
                    [b"~".as_slice(), &id].concat()
                })
            }
        },
    };
    let head = match claim {
        // No identity: ZeroMQ draws a unique one itself.
        Some(id) if id.is_empty() => Some(head),
        Some(id) if id.len() <= MAX_IDENTITY + 1 => {
            let mut unique = id;
            unique.extend_from_slice(format!("#{n}").as_bytes());
            with_identity(&head, &unique)
        }
        _ => None,
    };
    let Some(head) = head else {
        st.impostors.fetch_add(1, Ordering::Relaxed);
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
        forget(evictable, n);
        return;
    };
    if !pump(client, server, Some(limit), &head) {
        st.oversized.fetch_add(1, Ordering::Relaxed);
        if proved {
            st.proved_oversized.fetch_add(1, Ordering::Relaxed);
            // its neighbours only see the link close
            eprintln!("cryptgpu: {}", oversized_reason(max_frame));
        }
    }
    forget(evictable, n);
    if let Ok(h) = out {
        let _ = h.join();
    }
}

impl FrameGuard {
    /// Listen on `public` and forward each connection to `inner`, cutting
    /// any connection that announces a frame of more than `max_frame`
    /// bytes (`UNPROVED_MAX_FRAME` for a connection that proved no key, on
    /// encrypted links). With `verify` (encrypted links) a connection whose socket
    /// identity does not prove a party's key stays evictable after its
    /// ZMTP handshake: a stranger that completes the handshake on every
    /// slot and then stays silent does not keep a party out.
    pub fn spawn(
        public: SocketAddr,
        inner: InnerAddr,
        max_frame: u64,
        verify: Option<Verifier>,
    ) -> Result<FrameGuard> {
        let listener = TcpListener::bind(public)
            .map_err(|e| EngineError::Unavailable(format!("cannot listen on {public}: {e}")))?;
        let public = listener.local_addr().unwrap_or(public);
        listener
            .set_nonblocking(true)
            .map_err(|e| EngineError::Peer(format!("listener on {public}: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(GuardStats::default());
        let open = Arc::new(AtomicUsize::new(0));
        let mut count = 0u64;
        let evictable: Arc<Evictable> = Arc::default();
        let (stop2, stats2, evict2) = (stop.clone(), stats.clone(), evictable.clone());
        let accept = thread::Builder::new()
            .name("cryptgpu-guard".into())
            .spawn(move || {
                while !stop2.load(Ordering::Acquire) {
                    let client = match listener.accept() {
                        Ok((c, _)) => c,
                        Err(_) => {
                            thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                    };
                    let live = open.load(Ordering::Acquire);
                    if live >= MAX_CONNECTIONS {
                        // Full: make room by cutting the oldest connection
                        // past its handshake without a proved key, else the
                        // oldest still in its handshake (a party completes
                        // and proves its own in milliseconds; a silent
                        // stranger never does), up to twice the bound while
                        // the cut ones wind down.
                        let oldest = if live < 2 * MAX_CONNECTIONS {
                            evict2.lock().ok().and_then(|mut q| {
                                let at = q.iter().position(|e| e.2).unwrap_or(0);
                                q.remove(at)
                            })
                        } else {
                            None
                        };
                        match oldest {
                            Some((_, s, _)) => {
                                let _ = s.shutdown(Shutdown::Both);
                                stats2.evicted.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                stats2.refused.fetch_add(1, Ordering::Relaxed);
                                let _ = client.shutdown(Shutdown::Both);
                                continue;
                            }
                        }
                    }
                    let _ = client.set_nonblocking(false);
                    let _ = client.set_nodelay(true);
                    open.fetch_add(1, Ordering::AcqRel);
                    count += 1;
                    let (open, st, n) = (open.clone(), stats2.clone(), count);
                    let (ev, v, inner) = (evict2.clone(), verify.clone(), inner.clone());
                    let _ = thread::Builder::new()
                        .name("cryptgpu-guard".into())
                        .spawn(move || {
                            serve(client, &inner, max_frame, &st, n, &ev, v.as_ref());
                            open.fetch_sub(1, Ordering::AcqRel);
                        });
                }
            })
            .map_err(|e| EngineError::Internal(format!("cannot start the frame guard: {e}")))?;
        Ok(FrameGuard {
            public,
            max_frame,
            stop,
            stats,
            accept: Some(accept),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.public
    }

    /// The frame limit of connections that proved a party's key.
    pub fn max_frame(&self) -> u64 {
        self.max_frame
    }

    /// Close the public port; the connections already accepted go on. A
    /// closing session does this first, so that a neighbour starting its
    /// next session is refused (and dials again) rather than let into
    /// this one, which is about to close.
    pub fn stop_accepting(&mut self) {
        self.stop.store(true, Ordering::Release);
        // the accepting loop polls a non-blocking listener every 5 ms
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

impl Drop for FrameGuard {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::zmtp::tests::frames;

    /// A READY command body with a socket type and an identity.
    fn ready_body(socket: &[u8], id: &[u8]) -> Vec<u8> {
        let mut body = vec![5u8];
        body.extend_from_slice(b"READY");
        for (k, v) in [(&b"Socket-Type"[..], socket), (b"Identity", id)] {
            body.push(k.len() as u8);
            body.extend_from_slice(k);
            body.extend_from_slice(&(v.len() as u32).to_be_bytes());
            body.extend_from_slice(v);
        }
        body
    }

    #[test]
    fn the_identity_is_read_from_ready() {
        let body = ready_body(b"PUSH", b"cryptgpu-party-1");
        assert_eq!(ready_identity(&body).unwrap(), b"cryptgpu-party-1");
        assert_eq!(ready_identity(&body[..6]).unwrap(), b"");
        assert!(ready_identity(b"\x05HELLO").is_none());
        assert!(
            ready_identity(&body[..body.len() - 3]).is_none(),
            "truncated value"
        );
    }

    #[test]
    fn the_identity_is_rewritten_and_the_rest_kept() {
        let ready = |id: &[u8]| ready_body(b"PUSH", id);
        let body = ready(b"cryptgpu-party-1");
        let mut head = frames(&[(0b100, &body)]);
        head.extend_from_slice(b"\x00\x03abc"); // a message frame after READY
        for new in [&b"cryptgpu-party-1#7"[..], &[b'x'; 250][..], b""] {
            let out = with_identity(&head, new).unwrap();
            assert_eq!(identity_of_head(&out).unwrap(), new);
            assert!(out.ends_with(b"\x00\x03abc"));
            assert_eq!(out[..GREETING], head[..GREETING]);
            // the frame lengths still check out, short or long header
            assert!(stream_within_limit([&out[..]], 1 << 20));
            let (start, len) = first_frame(&out).unwrap().unwrap();
            assert_eq!(&out[start..start + len], &ready(new)[..]);
        }
        assert!(with_identity(&head[..GREETING + 5], b"x").is_none());
    }

    /// On encrypted links, a connection whose identity proves no key is cut
    /// at a frame header above `UNPROVED_MAX_FRAME`; a proved one may send
    /// up to the protocol's limit.
    #[test]
    fn an_unproved_connection_may_not_announce_a_large_frame() {
        use std::io::{Read, Write};
        let inner = TcpListener::bind("127.0.0.1:0").unwrap();
        let inner_addr = inner.local_addr().unwrap();
        // The inner end (ZeroMQ's ROUTER in the transport) reads and drops.
        thread::spawn(move || {
            for c in inner.incoming().flatten() {
                thread::spawn(move || {
                    let mut c = c;
                    let mut buf = [0u8; 65536];
                    while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
                });
            }
        });
        let verify: Verifier =
            Arc::new(|id: &[u8]| (id == b"proved").then(|| b"cryptgpu-party-1".to_vec()));
        let g = FrameGuard::spawn(
            "127.0.0.1:0".parse().unwrap(),
            inner_addr.into(),
            1 << 30,
            Some(verify),
        )
        .unwrap();
        // greeting, then READY
        let ready = |id: &[u8]| frames(&[(0b100, &ready_body(b"DEALER", id))]);
        let big = 1u64 << 20; // above UNPROVED_MAX_FRAME, far below the limit
        let send = |id: &[u8]| {
            let mut c = TcpStream::connect(g.addr()).unwrap();
            let mut m = ready(id);
            m.push(0b10);
            m.extend_from_slice(&big.to_be_bytes());
            c.write_all(&m).unwrap();
            // the body, as far as the guard lets it through
            let body = vec![7u8; big as usize];
            let _ = c.write_all(&body);
            thread::sleep(Duration::from_millis(200));
        };
        send(b"stranger");
        send(b"");
        assert_eq!(g.stats.oversized.load(Ordering::Relaxed), 2);
        send(b"proved");
        assert_eq!(
            g.stats.oversized.load(Ordering::Relaxed),
            2,
            "a proved party is not cut"
        );
    }
}
