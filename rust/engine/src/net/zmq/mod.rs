//! The ZeroMQ transport (issue 7): one party per process, SPMD.
//!
//! Binding: the pure-Rust `zeromq` crate (ZMTP 3.1 over TCP). It needs no
//! C toolchain or system libzmq, so the abi3 wheel stays self-contained;
//! the `zmq` crate would pull libzmq and libsodium through `zmq-sys`, whose
//! vendored build needs a system libsodium for CURVE. The price is that the
//! `zeromq` crate has no CURVE security mechanism, so links are secured the
//! way the issue allows: a Noise_KK handshake (`crate::net::noise`) carried in
//! ZeroMQ messages, then every frame sealed with the resulting keys.
//!
//! Sockets: each party binds one ROUTER socket (behind the frame guard,
//! `net/guard.rs`) and connects one DEALER socket to each neighbour's
//! ROUTER, used as PUSH/PULL (the ROUTER's peer-identity frame is dropped;
//! unlike PULL, a ROUTER survives a stranger's malformed ZMTP stream).
//! Every ZeroMQ message is a single frame `[sender rank, kind, payload]`;
//! the receiver keeps a queue per sender, since both neighbours feed the
//! same socket. ZeroMQ keeps the order
//! of messages on one connection, which the Noise nonces require.
//!
//! The crate is async (tokio); the transport owns a one-worker runtime so
//! ZeroMQ's reader and writer tasks run while the party computes, and the
//! blocking `Transport` calls wait on it with the session's timeout.
//!
//! Shutdown: a DEALER socket flushes in a background task, so a process that
//! exits right after its last send could lose that message. `close` (called
//! by the Python front end at exit, and on drop) therefore sends BYE to both
//! neighbours and waits for theirs: once a neighbour says BYE it has
//! received everything it needed from this party.

use crate::error::{EngineError, Result};
use crate::net::guard::{FrameGuard, Verifier};
use crate::net::identity::{identity, proved_rank, verify_identity, Unproved};
use crate::net::noise::{self, LinkKeys};
use crate::net::tcp::encode_frame;
use crate::net::{Msg, Peer, Transport};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeromq::{DealerSocket, RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

mod body;
mod dial;
mod handshake;
mod inner;
mod reasons;
pub(crate) use reasons::running_timeout;
mod teardown;
mod watch;
use body::Body;
use dial::{slow, CONNECT_ATTEMPT};
use inner::{bind_inner, max_frame_bytes, mode_mismatch, PrivateDir};

/// Bytes of a neighbour's reason for giving up its handshakes that are sent
/// and shown.
const REFUSAL_TEXT: usize = 400;

const HANDSHAKE: u8 = 1;
const REFUSED: u8 = 2;
const FRAME: u8 = 3;
const BYE: u8 = 4;
/// Insecure links' handshake (`handshake.rs`): an attempt's nonce, the
/// nonce answered, the answered nonce confirmed.
const HELLO: u8 = 5;
const HELLO_BACK: u8 = 6;
const HELLO_DONE: u8 = 7;
/// How long an abort notice may wait to be sent.
const ABORT_SEND: Duration = Duration::from_millis(500);
/// What a sealed BYE carries.
const BYE_TEXT: &[u8] = b"cryptgpu BYE";

pub struct ZmqTransport {
    rank: usize,
    /// Where the parties listen (a neighbour is dialled again when its
    /// connection may have reached its previous session).
    addrs: [SocketAddr; 3],
    /// When a handshake's responder last dialled again (`handshake.rs`).
    redialled: Option<Instant>,
    /// The public port: frame lengths checked before the zeromq crate
    /// sees them (net/guard.rs).
    guard: Option<FrameGuard>,
    /// The private directory of the ROUTER socket's Unix socket (removed
    /// when the transport closes).
    private: Option<PrivateDir>,
    rt: tokio::runtime::Runtime,
    /// Where the neighbours' messages arrive. A ROUTER socket rather than
    /// PULL: a PULL socket's receive fails when any one connection's ZMTP
    /// stream turns malformed (a stranger's bad command after its
    /// handshake ended a running session); a ROUTER drops that connection
    /// and goes on.
    pull: Option<RouterSocket>,
    /// DEALER sockets (PUSH semantics: one peer each) to the next and the
    /// previous party.
    push: [Option<DealerSocket>; 2],
    noise: [Option<snow::TransportState>; 2],
    /// Messages received but not yet asked for, per sender rank.
    pending: [VecDeque<Received>; 3],
    timeout: Duration,
    closed: bool,
    failed: bool,
    /// Connection events of the ROUTER socket (peers identify as
    /// `cryptgpu-party-<rank>`), to notice a neighbour that went away.
    monitor: Option<futures_channel::mpsc::Receiver<zeromq::SocketEvent>>,
    /// When each party's connection to us was last seen closing.
    gone: [Option<Instant>; 3],
    /// Live connections to our ROUTER socket claiming each party.
    links: [usize; 3],
    /// Messages dropped because they could not be authenticated (on
    /// encrypted links): from a connection whose identity proved no key
    /// (or another party's), malformed, claiming an impossible sender, or
    /// not opening under the sender's Noise keys.
    dropped: u64,
    /// Protocol messages of the neighbours never read, found at the end
    /// (`goodbye`; authenticated ones only).
    unread: usize,
    /// Links are encrypted (keys were given): only messages arriving on a
    /// connection that proved the claimed sender's key are read, from the
    /// first handshake message on.
    encrypted: bool,
    /// Messages dropped because they claimed party r on a connection that
    /// did not prove r's key: reported if r is then never heard from (a
    /// wrong key on either side looks like this; so does a stranger).
    unproved: [u64; 3],
    /// Connections and messages that claimed party r with its plain
    /// identity (no key's tag): a party running without keys.
    plain: [u64; 3],
    /// What the last REFUSED claiming party r said during this party's
    /// handshake with r (`handshake.rs`): shown, as not authenticated, if
    /// r's link then closes or the wait runs out.
    refusal: [Option<String>; 3],
    /// This party's keys (encrypted links), to read why a neighbour's
    /// identity did not prove its key (`claims`).
    keys: Option<LinkKeys>,
    /// Why the last identity claiming party r that did not prove its key
    /// failed, as far as its tag tells (a clock off, a list in another
    /// order, no key): the wording of a timeout only.
    claims: [Option<Unproved>; 3],
    /// How long the last connection to each neighbour took (from the
    /// start of its successful attempt), when longer than a fast link's
    /// first attempt may take (`slow`): a slow link's handshake waits and
    /// dials in proportion (`handshake.rs`).
    slow_link: [Option<Duration>; 3],
    /// The handshakes are done: a wait that runs out now is not a start-up
    /// problem (an address, a key, a list's order), and is not worded as one.
    running: bool,
}

/// A message received but not yet asked for: its kind and its payload
/// (views into the received frames, no copy).
type Received = (u8, Body);

/// How long a neighbour may stay disconnected before waiting for it is
/// given up (ZeroMQ reconnects by itself after a transient failure).
const GONE_GRACE: Duration = Duration::from_millis(500);

/// A message's first two bytes, `[rank, kind]`, with room for `payload`
/// more: the caller appends the payload, so a frame is built in place and
/// never copied behind its header.
fn header(rank: usize, kind: u8, payload: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(payload + 2);
    m.push(rank as u8);
    m.push(kind);
    m
}

fn idx(p: Peer) -> usize {
    match p {
        Peer::Next => 0,
        Peer::Prev => 1,
    }
}

impl ZmqTransport {
    /// Bind `bind` (by default `addrs[rank]`), connect to both neighbours
    /// and, with keys, run the Noise handshakes, all within `timeout`.
    pub fn connect(
        rank: usize,
        addrs: &[SocketAddr; 3],
        bind: Option<SocketAddr>,
        timeout: Duration,
        keys: Option<&LinkKeys>,
    ) -> Result<ZmqTransport> {
        if rank > 2 {
            return Err(EngineError::Invalid(format!(
                "rank must be 0, 1 or 2, got {rank}"
            )));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cryptgpu-zmq")
            .enable_all()
            .build()
            .map_err(|e| EngineError::Internal(format!("cannot start the ZeroMQ runtime: {e}")))?;
        let here = bind.unwrap_or(addrs[rank]);
        let mut pull = RouterSocket::new();
        let monitor = pull.monitor();
        // The public port is the frame guard, which forwards to the ROUTER
        // socket; nothing else may reach that socket (it would bypass the
        // guard's checks): on Unix it listens on a Unix socket in a private
        // directory, elsewhere on loopback.
        let (inner, private) = bind_inner(&rt, &mut pull)
            .map_err(|e| EngineError::Peer(format!("party {rank} cannot bind its socket: {e}")))?;
        let guard = FrameGuard::spawn(
            here,
            inner,
            max_frame_bytes()?,
            keys.map(|k| {
                let k = k.clone();
                Arc::new(move |id: &[u8]| verify_identity(&k, rank, id)) as Verifier
            }),
        )
        .map_err(|e| match e {
            // a port in use or not ours: this host's problem, not a peer's
            EngineError::Unavailable(m) => EngineError::Unavailable(format!("party {rank}: {m}")),
            other => other,
        })?;
        let (n, p) = ((rank + 1) % 3, (rank + 2) % 3);
        let mut push: [Option<DealerSocket>; 2] = [None, None];
        let mut slow_link = [None; 3];
        let deadline = Instant::now() + timeout;
        // the second dial's first attempt as long as the first one's took
        // on a slow link (both links are alike, as a rule)
        let mut first = CONNECT_ATTEMPT;
        for (k, who) in [(0, n), (1, p)] {
            let (s, took) = Self::dial(&rt, rank, who, addrs[who], keys, deadline, timeout, first)?;
            push[k] = Some(s);
            slow_link[who] = slow(took);
            first = slow(took).map_or(CONNECT_ATTEMPT, |t| t.saturating_mul(2));
        }
        let mut t = ZmqTransport {
            rank,
            addrs: *addrs,
            redialled: None,
            guard: Some(guard),
            private,
            rt,
            pull: Some(pull),
            push,
            noise: [None, None],
            pending: Default::default(),
            timeout,
            closed: false,
            failed: false,
            monitor: Some(monitor),
            gone: [None; 3],
            links: [0; 3],
            dropped: 0,
            unread: 0,
            encrypted: keys.is_some(),
            unproved: [0; 3],
            plain: [0; 3],
            refusal: Default::default(),
            keys: keys.cloned(),
            claims: [None; 3],
            slow_link,
            running: false,
        };
        // Messages queue in ZeroMQ, so any order works; this one matches
        // the TCP transport's.
        let order = if rank == 0 {
            [(Peer::Next, true), (Peer::Prev, false)]
        } else {
            [(Peer::Prev, false), (Peer::Next, true)]
        };
        for (peer, initiator) in order {
            let r = match keys {
                // insecure links: an exchange of nonces (handshake.rs)
                None => t.hello(peer, initiator),
                Some(k) => t
                    .handshake(k, peer, initiator)
                    .map(|st| t.noise[idx(peer)] = Some(st)),
            };
            if let Err(e) = r {
                // Skip the BYE on drop. With keys, tell both neighbours at
                // once rather than leave them to time out; the reason goes
                // along: a neighbour that failed for another cause (its
                // other link closed) is not reported as refusing this
                // party's key.
                t.failed = true;
                if keys.is_some() {
                    let why = e.to_string();
                    let why = &why.as_bytes()[..why.len().min(REFUSAL_TEXT)];
                    let _ = t.post(Peer::Next, REFUSED, why);
                    let _ = t.post(Peer::Prev, REFUSED, why);
                }
                return Err(e);
            }
        }
        t.running = true;
        Ok(t)
    }

    /// Messages dropped as unauthenticated (encrypted links only).
    pub fn dropped_messages(&self) -> u64 {
        self.dropped
    }

    /// Links are encrypted: every genuine message opens under Noise keys,
    /// so anything that does not can be dropped instead of ending the run.
    fn authenticated(&self) -> bool {
        self.noise.iter().all(|n| n.is_some())
    }

    /// Connections the frame guard cut for announcing an oversized frame.
    pub fn oversized_connections(&self) -> u64 {
        self.guard.as_ref().map_or(0, |g| {
            g.stats.oversized.load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// Send a small control message `[rank, kind, body]` to `to`.
    fn post(&mut self, to: Peer, kind: u8, body: &[u8]) -> Result<()> {
        let mut m = header(self.rank, kind, body.len());
        m.extend_from_slice(body);
        self.send_message(to, m)
    }

    /// Send one ZeroMQ message (header included) to `to`.
    fn send_message(&mut self, to: Peer, m: Vec<u8>) -> Result<()> {
        let (rank, who) = (self.rank, to.rank(self.rank));
        let s = self.push[idx(to)].as_mut().ok_or_else(|| {
            EngineError::Peer(format!("party {rank}: the link to party {who} is closed"))
        })?;
        let timeout = self.timeout;
        self.rt
            .block_on(async { tokio::time::timeout(timeout, s.send(ZmqMessage::from(m))).await })
            .map_err(|_| {
                EngineError::Peer(format!(
                    "party {rank} could not send to party {who} within {timeout:?}"
                ))
            })?
            .map_err(|e| EngineError::Peer(format!("party {rank} cannot send to party {who}: {e}")))
    }

    /// The next message from party `who`, waiting until `deadline`.
    fn take(&mut self, who: usize, deadline: Instant) -> Result<Received> {
        self.take_until(who, deadline, deadline)?.ok_or_else(|| {
            EngineError::Internal(format!("party {}: no message and no timeout", self.rank))
        })
    }

    /// The next message from party `who`, or `None` once `until` passes
    /// (when it is before `deadline`, where waiting fails).
    fn take_until(
        &mut self,
        who: usize,
        until: Instant,
        deadline: Instant,
    ) -> Result<Option<Received>> {
        let rank = self.rank;
        loop {
            if let Some(m) = self.pending[who].pop_front() {
                return Ok(Some(m));
            }
            if until < deadline && Instant::now() >= until {
                return Ok(None);
            }
            self.watch_connections();
            if self.gone[who].is_some_and(|t| t.elapsed() > GONE_GRACE) {
                return Err(self.closed_error(who));
            }
            // Wait in short slices so that a neighbour that goes away (or
            // Ctrl-C) is noticed long before the timeout.
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timeout_error(who));
            }
            let slice = left
                .min(until.saturating_duration_since(Instant::now()))
                .min(Duration::from_millis(100))
                .max(Duration::from_millis(1));
            let pull = self
                .pull
                .as_mut()
                .ok_or_else(|| EngineError::Peer(format!("party {rank}: the session is closed")))?;
            let got = self
                .rt
                .block_on(async { tokio::time::timeout(slice, pull.recv()).await });
            let msg = match got {
                // a whole slice without a message: time to ask whether the
                // user pressed Ctrl-C (not on every message: it takes the GIL)
                Err(_) if crate::net::interrupted() => {
                    return Err(crate::net::interrupted_error(
                        rank,
                        &format!("waiting for party {who}"),
                    ))
                }
                Err(_) => continue,
                Ok(Err(e)) => {
                    return Err(EngineError::Peer(format!(
                        "party {rank} lost a link (waiting for party {who}): {e}"
                    )))
                }
                Ok(Ok(m)) => m,
            };
            // The ROUTER's peer identity, then one frame per message (a
            // large one in parts, as the frame guard splits it: only a
            // FRAME is large); anything else is a malformed message. On
            // encrypted links a message counts only if its connection
            // proved the key of the party it claims to come from (the frame
            // guard checked the identity's tag): a stranger's REFUSED or
            // garbage during the handshake ended the session before.
            let mut frames = msg.into_vec();
            let via = frames.first().and_then(|id| proved_rank(id));
            let stranger = self.encrypted && via.is_none();
            let parts = frames.split_off(frames.len().min(1));
            let frame = match parts.first() {
                Some(f) if f.len() >= 2 && (parts.len() == 1 || f[1] == FRAME) => f.clone(),
                _ if self.authenticated() || stranger => {
                    self.dropped += 1;
                    continue;
                }
                _ => {
                    return Err(EngineError::Peer(format!(
                        "party {rank} received a malformed message (waiting for party {who})"
                    )))
                }
            };
            let from = frame[0] as usize;
            if self.encrypted && via != Some(from) {
                self.dropped += 1;
                if let Some(n) = self.unproved.get_mut(from) {
                    *n += 1;
                }
                // the guard's `~` + the claimed identity + `#n`: a plain
                // identity, with no key's tag, is what a party without
                // keys sends
                let plain = from < 3
                    && frames.first().is_some_and(|id| {
                        id.strip_prefix(b"~")
                            .and_then(|c| c.split(|&b| b == b'#').next())
                            .is_some_and(|c| c == identity(from))
                    });
                if plain {
                    self.plain[from] += 1;
                }
                continue;
            }
            if from > 2 || from == rank {
                if self.authenticated() {
                    self.dropped += 1;
                    continue;
                }
                return Err(EngineError::Peer(format!(
                    "party {rank} received a message claiming to be from party {from}"
                )));
            }
            let mut parts = parts;
            parts[0] = frame.slice(2..);
            self.pending[from].push_back((frame[1], Body::new(parts)));
        }
    }

    /// Finish the session: BYE exchange, then close the sockets, giving the
    /// writer tasks a moment to flush the last BYE. Idempotent.
    /// Err when a neighbour failed the session after this party's last
    /// operation (`goodbye`).
    pub fn shutdown(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        if let Some(g) = self.guard.as_mut() {
            g.stop_accepting();
        }
        let end = if self.failed {
            Ok(())
        } else {
            self.goodbye(self.timeout.min(Duration::from_secs(5)))
        };
        self.push = [None, None];
        std::thread::sleep(Duration::from_millis(20));
        self.pull = None;
        self.guard = None; // its public port closed before the goodbye
        self.private = None; // removes the ROUTER socket's directory
        end
    }
}

impl Transport for ZmqTransport {
    fn send(&mut self, to: Peer, msg: Msg) -> Result<()> {
        let (rank, who) = (self.rank, to.rank(self.rank));
        if matches!(msg, Msg::Abort(_)) {
            self.failed = true;
        }
        let m = match self.noise[idx(to)].as_mut() {
            None => {
                let mut m = header(rank, FRAME, 0);
                encode_frame(&msg, &mut m);
                m
            }
            Some(st) => {
                let mut plain = Vec::new();
                encode_frame(&msg, &mut plain);
                let mut m = header(
                    rank,
                    FRAME,
                    plain.len() + plain.len() / noise::CHUNK * 18 + 18,
                );
                noise::seal_into(st, &plain, &mut m).map_err(|e| {
                    EngineError::Peer(format!("party {rank} cannot seal for party {who}: {e}"))
                })?;
                m
            }
        };
        if !matches!(msg, Msg::Abort(_)) {
            return self.send_message(to, m);
        }
        // Best effort, and briefly: a neighbour that stopped reading (a
        // stopped process) held a party's abort to its other neighbour for
        // the whole timeout, which then named the wrong party.
        let brief = self.timeout.min(ABORT_SEND);
        let timeout = std::mem::replace(&mut self.timeout, brief);
        let r = self.send_message(to, m);
        self.timeout = timeout;
        r
    }

    fn recv(&mut self, from: Peer) -> Result<(u64, Vec<u64>)> {
        let (rank, who) = (self.rank, from.rank(self.rank));
        let deadline = Instant::now() + self.timeout;
        let r = (|| {
            let plain = loop {
                let (kind, body) = match self.take_watching(from, deadline) {
                    Err(e) if Instant::now() >= deadline => {
                        // told to the other neighbour first, which may have
                        // timed out on this party at the same moment: it
                        // then names the silent party (a review: the session's
                        // abort came after this wait and its send to the
                        // silent party, too late for it)
                        let other = if matches!(from, Peer::Next) {
                            Peer::Prev
                        } else {
                            Peer::Next
                        };
                        let _ = self.send(other, Msg::Abort(e.reason()));
                        return Err(self.late_reason(from, e));
                    }
                    got => got?,
                };
                let auth = self.authenticated();
                if kind == BYE && self.genuine_bye(from, &body.bytes()) {
                    return Err(EngineError::Peer(format!(
                        "party {rank}: party {who} left the session while this party waited \
                         for its message (it finished, failed or stopped; or the parties ran \
                         different programs)"
                    )));
                }
                if !self.encrypted && matches!(kind, HELLO | HELLO_BACK | HELLO_DONE) {
                    continue; // a late answer or a repeat of the opening exchange
                }
                if kind != FRAME {
                    if auth {
                        // Only sealed frames come from a party mid-protocol.
                        self.dropped += 1;
                        continue;
                    }
                    if !self.encrypted && (kind == HANDSHAKE || kind == REFUSED) {
                        return Err(mode_mismatch(rank, who));
                    }
                    return Err(EngineError::Peer(format!(
                        "party {rank}: party {who} sent a message of kind {kind} during a protocol"
                    )));
                }
                match self.noise[idx(from)].as_mut() {
                    // A forged or replayed frame fails on its first chunk,
                    // before the receive nonce moves: drop it and keep
                    // waiting for the genuine one.
                    // An empty body authenticates nothing.
                    Some(_) if body.is_empty() && auth => {
                        self.dropped += 1;
                        continue;
                    }
                    Some(st) => match body.open(st) {
                        Ok(p) => break p,
                        Err(_) if auth => {
                            self.dropped += 1;
                            continue;
                        }
                        Err(e) => {
                            return Err(EngineError::Peer(format!(
                                "party {rank}: bad frame from party {who}: {e}"
                            )))
                        }
                    },
                    None => break body,
                }
            };
            match plain.read_frame() {
                Ok((Msg::Data(tag, v), true)) => Ok((tag, v)),
                Ok((Msg::Data(..), false)) => Err(EngineError::Peer(format!(
                    "party {rank}: frame from party {who} has trailing bytes"
                ))),
                Ok((Msg::Abort(why), _)) => {
                    Err(EngineError::Peer(format!("party {who} aborted: {why}")))
                }
                Err(e) => Err(EngineError::Peer(format!(
                    "party {rank}: bad frame from party {who}: {e}"
                ))),
            }
        })();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn close(&mut self) -> Result<()> {
        self.shutdown()
    }
}

impl Drop for ZmqTransport {
    fn drop(&mut self) {
        // dropped without `close`: no call is left to fail
        if let Err(e) = self.shutdown() {
            eprintln!("cryptgpu: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::identity::{identity_to, minute_now, why_unproved, TAG_SKEW_MINUTES};
    use zeromq::SocketOptions;

    fn free() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    /// A party's proved identity passes its neighbour's check, once, and
    /// nothing else does: not the same identity again (a recording of it
    /// replayed to this process), another party's claim, a stale or future
    /// minute, a changed tag or nonce, a tag made with a stranger's key, or
    /// a malformed one.
    #[test]
    fn proved_identities_are_checked() {
        let kp: Vec<_> = (0..4).map(|_| noise::generate_keypair().unwrap()).collect();
        let publics = [kp[0].1, kp[1].1, kp[2].1];
        let keys = |r: usize| LinkKeys {
            private: kp[r].0,
            publics,
            job: [0; 32],
        };
        let id = identity_to(1, 0, Some(&keys(1)));
        // party 2 cannot check a claim meant for party 0 ...
        assert_eq!(verify_identity(&keys(2), 2, &id), None);
        // ... and a party's own identity is not a neighbour's
        assert_eq!(verify_identity(&keys(1), 1, &id), None);
        assert_eq!(verify_identity(&keys(0), 0, &id), Some(identity(1)));
        assert_eq!(verify_identity(&keys(0), 0, &id), None, "a replay");
        // each connection's identity is new
        let again = identity_to(1, 0, Some(&keys(1)));
        assert_ne!(again, id);
        let text = String::from_utf8(again.clone()).unwrap();
        let (head, tag) = text.rsplit_once('/').unwrap();
        let flip = |s: &str| {
            let mut b = s.as_bytes().to_vec();
            b[0] = if b[0] == b'0' { b'1' } else { b'0' };
            String::from_utf8(b).unwrap()
        };
        let flipped = format!("{head}/{}", flip(tag));
        assert_eq!(verify_identity(&keys(0), 0, flipped.as_bytes()), None);
        let (start, nonce) = head.rsplit_once('/').unwrap();
        let renonced = format!("{start}/{}/{tag}", flip(nonce));
        assert_eq!(verify_identity(&keys(0), 0, renonced.as_bytes()), None);
        assert_eq!(verify_identity(&keys(0), 0, &again), Some(identity(1)));
        let now = minute_now();
        let made = |minute: u64, nonce: &str| {
            let t = noise::identity_tag(&keys(1), 1, 1, 0, minute, nonce.as_bytes()).unwrap();
            format!("cryptgpu-party-1/{minute}/{nonce}/{}", noise::hex(&t))
        };
        for minute in [now - TAG_SKEW_MINUTES - 1, now + TAG_SKEW_MINUTES + 1] {
            let stale = made(minute, "0123456789abcdef");
            assert_eq!(verify_identity(&keys(0), 0, stale.as_bytes()), None);
        }
        let ok = made(now - TAG_SKEW_MINUTES, "fedcba9876543210");
        assert_eq!(
            verify_identity(&keys(0), 0, ok.as_bytes()),
            Some(identity(1))
        );
        // a stranger (key 3) that knows every public key
        let stranger = LinkKeys {
            private: kp[3].0,
            publics: [kp[0].1, kp[3].1, kp[2].1],
            job: [0; 32],
        };
        let forged = identity_to(1, 0, Some(&stranger));
        assert_eq!(verify_identity(&keys(0), 0, &forged), None);
        for bad in [
            &b"cryptgpu-party-1"[..],
            b"cryptgpu-party-1/x/00",
            b"cryptgpu-party-9/1/00000000000000000000000000000000",
            b"cryptgpu-party-1/1/2/3",
            b"cryptgpu-party-1/1/2/3/4",
            b"\xff\xfe",
            b"",
        ] {
            assert_eq!(verify_identity(&keys(0), 0, bad), None, "{bad:?}");
        }
    }

    /// The ROUTER socket behind the guard is no TCP port (any local process
    /// could reach one and abort the party with a forged frame header,
    /// bypassing the guard): it is a Unix socket in a directory of mode
    /// 0700, removed when the transport closes; the session still works
    /// through the guard.
    #[cfg(unix)]
    #[test]
    fn the_router_socket_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let (rt, addrs, _sinks, mut t) = party_zero();
        let dir = t.private.as_ref().map(|d| d.0.clone()).unwrap();
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert!(dir.join("r").exists(), "no socket in {dir:?}");
        // a message through the guard still arrives
        let mut raw = DealerSocket::new();
        rt.block_on(raw.connect(&format!("tcp://{}", addrs[0])))
            .unwrap();
        let mut m = vec![1u8, FRAME];
        encode_frame(&Msg::Data(4, vec![5, 6]), &mut m);
        rt.block_on(raw.send(ZmqMessage::from(m))).unwrap();
        assert_eq!(t.recv(Peer::Next).unwrap(), (4, vec![5, 6]));
        t.failed = true;
        drop(t);
        assert!(!dir.exists(), "{dir:?} left behind");
    }

    /// A runtime, three addresses, the transports of parties 1 and 2 (kept
    /// alive by the caller; they exchange nothing after connecting) and
    /// party 0's, on insecure links: messages injected through a raw
    /// DEALER then reach party 0 as its neighbours' would.
    fn party_zero() -> (
        tokio::runtime::Runtime,
        [SocketAddr; 3],
        Vec<ZmqTransport>,
        ZmqTransport,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let addrs = [free(), free(), free()];
        let wait = Duration::from_secs(10);
        let others: Vec<_> = (1..3)
            .map(|r| {
                std::thread::spawn(move || {
                    ZmqTransport::connect(r, &addrs, None, wait, None).unwrap()
                })
            })
            .collect();
        let t = ZmqTransport::connect(0, &addrs, None, wait, None).unwrap();
        let mut others: Vec<_> = others.into_iter().map(|h| h.join().unwrap()).collect();
        for o in &mut others {
            o.failed = true; // no goodbye when the test drops them
        }
        (rt, addrs, others, t)
    }

    /// Malformed messages from a peer are errors, never panics: garbage
    /// injected through a raw ZeroMQ socket as party 1's.
    /// Three parties on encrypted links, each given to `act` (by rank)
    /// before all three shut down at once; what each shutdown returned,
    /// with the messages it dropped and found unread at the end.
    fn shut_down_after(
        act: impl Fn(usize, &mut ZmqTransport, &[LinkKeys]) + Sync,
    ) -> Vec<(Result<()>, u64, usize)> {
        let addrs = [free(), free(), free()];
        let kp: Vec<_> = (0..3).map(|_| noise::generate_keypair().unwrap()).collect();
        let publics = [kp[0].1, kp[1].1, kp[2].1];
        let keys: Vec<_> = (0..3)
            .map(|r| LinkKeys {
                private: kp[r].0,
                publics,
                job: [0; 32],
            })
            .collect();
        std::thread::scope(|sc| {
            let hs: Vec<_> = (0..3)
                .map(|r| {
                    let (keys, act) = (&keys, &act);
                    sc.spawn(move || {
                        let wait = Duration::from_secs(10);
                        let mut t =
                            ZmqTransport::connect(r, &addrs, None, wait, Some(&keys[r])).unwrap();
                        act(r, &mut t, keys);
                        let before = t.dropped;
                        let end = t.shutdown();
                        (end, t.dropped - before, t.unread)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    /// Frames on a connection whose identity proves party 1's key (a
    /// stranger replaying a recorded connection, its tag still valid) but
    /// that do not open under the link's keys are dropped at the end, not
    /// counted as messages never read: party 0 reported that the parties
    /// "ran different programs" (a user probe). A genuine frame never
    /// read still counts; a neighbour's abort is the error.
    #[test]
    fn only_authentic_messages_count_at_the_end() {
        let replayed = |r: usize, t: &mut ZmqTransport, keys: &[LinkKeys]| {
            if r == 0 {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap();
                let mut opts = SocketOptions::default();
                let id = identity_to(1, 0, Some(&keys[1]));
                opts.peer_identity(zeromq::util::PeerIdentity::try_from(id).unwrap());
                let mut raw = DealerSocket::with_options(opts);
                rt.block_on(raw.connect(&format!("tcp://{}", t.addrs[0])))
                    .unwrap();
                for i in 0..5u8 {
                    let mut m = vec![1u8, FRAME, 40, 0];
                    m.extend_from_slice(&[i; 40]);
                    rt.block_on(raw.send(ZmqMessage::from(m))).unwrap();
                }
                std::thread::sleep(Duration::from_millis(300)); // `raw` still open
            } else {
                // party 0 takes the frames from its queue before their BYEs
                std::thread::sleep(Duration::from_millis(800));
            }
        };
        let ends = shut_down_after(replayed);
        let (end, dropped, unread) = &ends[0];
        assert!(end.is_ok(), "{end:?}");
        assert_eq!((*dropped, *unread), (5, 0));
        // a genuine frame party 0 never read counts; an abort is the error
        let ends = shut_down_after(|r, t, _| {
            if r == 1 {
                t.send(Peer::Prev, Msg::Data(7, vec![1, 2])).unwrap();
            }
            if r == 2 {
                t.send(Peer::Next, Msg::Abort("boom".into())).unwrap();
            }
        });
        assert_eq!(ends[0].2, 1, "one genuine frame never read");
        let e = ends[0].0.as_ref().unwrap_err().to_string();
        assert!(
            e.contains("party 0 finished, but party 2 failed") && e.contains("boom"),
            "{e}"
        );
        assert!(ends[1].0.is_ok() && ends[2].0.is_ok());
    }

    /// Party 0 waits for party 1, which waits for a silent party: both
    /// time out at about the same moment, and party 0 named party 1, which
    /// was alive (a user probe, SIGSTOP on party 2). Party 1's abort notice
    /// coming within a second of party 0's timeout is now the error.
    #[test]
    fn a_timeout_names_the_reason_a_neighbour_sends_just_after() {
        shut_down_after(|r, t, _| match r {
            0 => {
                t.timeout = Duration::from_millis(800);
                let e = t.recv(Peer::Next).unwrap_err().to_string();
                assert!(e.contains("party 1 aborted: party 1 got no answer"), "{e}");
            }
            1 => {
                std::thread::sleep(Duration::from_millis(1000));
                let why = Msg::Abort("party 1 got no answer from party 2".into());
                t.send(Peer::Prev, why).unwrap();
            }
            _ => {}
        });
    }

    /// Party 0 waits for party 2 while party 1 aborts: the abort (sealed)
    /// is the error at once (it waited out the timeout, and blamed party
    /// 2); a frame party 1 sent before it stays queued, opened (opening it
    /// again gives it back, the keys' nonce unmoved).
    #[test]
    fn a_party_waiting_on_one_neighbour_hears_the_others_abort() {
        shut_down_after(|r, t, _| match r {
            0 => {
                t.timeout = Duration::from_secs(10);
                let t0 = Instant::now();
                let e = t.recv(Peer::Prev).unwrap_err().to_string();
                assert!(e.contains("party 1 aborted: out of step"), "{e}");
                assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
                let (kind, body) = t.pending[1].front().cloned().unwrap();
                let st = t.noise[idx(Peer::Next)].as_mut().unwrap();
                let (m, _) = body.open(st).unwrap().read_frame().unwrap();
                assert!(kind == FRAME && matches!(m, Msg::Data(7, _)));
            }
            1 => {
                std::thread::sleep(Duration::from_millis(300));
                t.send(Peer::Prev, Msg::Data(7, vec![1])).unwrap();
                t.send(Peer::Prev, Msg::Abort("out of step".into()))
                    .unwrap();
            }
            _ => std::thread::sleep(Duration::from_millis(3000)),
        });
    }

    /// The process's virtual memory, in bytes (Linux).
    fn vm_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb << 10
    }

    /// A raw connection to `addr` with party `rank`'s socket identity
    /// (proved for `to`: a recording of one, replayed within its minutes,
    /// reads the same), through the ZMTP handshake of a DEALER socket.
    fn as_party(addr: SocketAddr, rank: usize, to: usize, keys: &LinkKeys) -> std::net::TcpStream {
        connect_as(addr, &identity_to(rank, to, Some(keys)))
    }

    /// A raw connection to `addr` with the socket identity `id`, through
    /// the ZMTP handshake of a DEALER socket.
    fn connect_as(addr: SocketAddr, id: &[u8]) -> std::net::TcpStream {
        use std::io::Write;
        let mut m = vec![0xffu8, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 3, 0];
        m.extend_from_slice(b"NULL");
        m.resize(64, 0);
        let mut ready = vec![5u8];
        ready.extend_from_slice(b"READY");
        for (k, v) in [(&b"Socket-Type"[..], &b"DEALER"[..]), (b"Identity", id)] {
            ready.push(k.len() as u8);
            ready.extend_from_slice(k);
            ready.extend_from_slice(&(v.len() as u32).to_be_bytes());
            ready.extend_from_slice(v);
        }
        m.extend_from_slice(&[0b100, ready.len() as u8]);
        m.extend_from_slice(&ready);
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(&m).unwrap();
        c
    }

    /// A connection whose identity tag proves party 0's key (a recording of
    /// one replayed within 5 minutes, a user probe) announced a frame of
    /// 16 GiB and sent 1 MiB of it: the `zeromq` crate behind the guard
    /// reserved the whole 16 GiB at the header (per connection: the probe's
    /// party aborted under `ulimit -v`, or grew to 101 GiB of virtual
    /// memory). The frame guard now forwards a large frame in parts that
    /// grow with the bytes delivered, so the party's memory does not jump,
    /// and the session goes on.
    #[test]
    fn an_announced_frame_reserves_no_more_than_arrives() {
        use std::io::Write;
        let ends = shut_down_after(|r, t, keys| match r {
            2 => {
                let before = vm_size();
                let mut c = as_party(t.addrs[1], 0, 1, &keys[0]);
                let mut m = vec![0b10u8];
                m.extend_from_slice(&(16u64 << 30).to_be_bytes());
                m.extend_from_slice(&[0, FRAME]);
                m.extend_from_slice(&vec![7u8; 1 << 20]);
                c.write_all(&m).unwrap();
                std::thread::sleep(Duration::from_millis(500));
                let grew = vm_size().saturating_sub(before);
                assert!(grew < 1 << 30, "{grew} bytes more virtual memory");
                drop(c);
            }
            0 => {
                std::thread::sleep(Duration::from_millis(700));
                t.send(Peer::Next, Msg::Data(5, vec![1; 100_000])).unwrap();
            }
            _ => {
                assert_eq!(t.recv(Peer::Prev).unwrap(), (5, vec![1; 100_000]));
            }
        });
        assert!(ends.iter().all(|e| e.0.is_ok()), "{:?}", ends[1].0);
    }

    /// Keys of three parties.
    fn link_keys() -> Vec<LinkKeys> {
        let kp: Vec<_> = (0..3).map(|_| noise::generate_keypair().unwrap()).collect();
        let publics = [kp[0].1, kp[1].1, kp[2].1];
        (0..3)
            .map(|r| LinkKeys {
                private: kp[r].0,
                publics,
                job: [0; 32],
            })
            .collect()
    }

    /// A ZMTP message frame (short or long header).
    fn zmtp_frame(body: &[u8]) -> Vec<u8> {
        let mut m = if body.len() > 255 {
            let mut m = vec![0b10u8];
            m.extend_from_slice(&(body.len() as u64).to_be_bytes());
            m
        } else {
            vec![0u8, body.len() as u8]
        };
        m.extend_from_slice(body);
        m
    }

    /// A stranger holding a recording of party 0's connection (its
    /// identity tag good for 5 minutes, new to this process: a restarted
    /// job with the same keys) sends party 1 a REFUSED with a text of its
    /// own while party 1 waits for party 0, which starts late: party 1
    /// said "party 0 gave up its handshakes: <the stranger's text>" and
    /// all three parties' start failed (a user probe). A refusal
    /// authenticates nothing; the start now completes.
    #[test]
    fn a_refusal_on_a_recorded_identity_does_not_end_the_start() {
        use std::io::Write;
        let (addrs, keys) = ([free(), free(), free()], link_keys());
        let text = b"party 0 was told by its operator to stop: use CRYPTGPU_INSECURE=1";
        let ends: Vec<Result<ZmqTransport>> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..3)
                .map(|r| {
                    let keys = &keys;
                    sc.spawn(move || {
                        if r == 0 {
                            std::thread::sleep(Duration::from_millis(1500));
                        }
                        let wait = Duration::from_secs(10);
                        ZmqTransport::connect(r, &addrs, None, wait, Some(&keys[r]))
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(500));
            let mut c = as_party(addrs[1], 0, 1, &keys[0]);
            let mut m = vec![0u8, REFUSED];
            m.extend_from_slice(text);
            c.write_all(&zmtp_frame(&m)).unwrap();
            let ends = hs.into_iter().map(|h| h.join().unwrap()).collect();
            drop(c);
            ends
        });
        for (r, e) in ends.into_iter().enumerate() {
            let mut t = e.unwrap_or_else(|e| panic!("party {r}: {e}"));
            t.failed = true;
        }
    }

    /// A neighbour that gives up its handshakes sends its reason and
    /// closes its link: the reason is shown, as not authenticated (any
    /// connection with a recording of the neighbour's identity could have
    /// sent it), printable characters only, once the link closes. Here
    /// "party 0" is a raw connection with party 0's identity; parties 0
    /// and 2 are ROUTER sockets that answer nothing.
    #[test]
    fn a_neighbour_that_gives_up_is_reported_as_not_authenticated() {
        use std::io::Write;
        let (addrs, keys) = ([free(), free(), free()], link_keys());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut sinks: Vec<RouterSocket> = Vec::new();
        for a in [addrs[0], addrs[2]] {
            let mut s = RouterSocket::new();
            rt.block_on(s.bind(&format!("tcp://{a}"))).unwrap();
            sinks.push(s);
        }
        let t0 = Instant::now();
        let e = std::thread::scope(|sc| {
            let h = sc.spawn(|| {
                let wait = Duration::from_secs(8);
                ZmqTransport::connect(1, &addrs, None, wait, Some(&keys[1]))
            });
            std::thread::sleep(Duration::from_millis(300));
            let mut c = as_party(addrs[1], 0, 1, &keys[0]);
            let mut m = vec![0u8, REFUSED];
            m.extend_from_slice(b"party 0: its link to party 2 failed \x1b[31m");
            c.write_all(&zmtp_frame(&m)).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            drop(c);
            h.join().unwrap()
        });
        let e = e.err().expect("party 0 gave up").to_string();
        assert!(
            e.contains(
                "party 0 closed its link after a message on its connection said it gave up its \
                 handshakes (not authenticated: party 0: its link to party 2 failed [31m)"
            ),
            "{e}"
        );
        assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    }

    /// Party 1 waits for party 0, whose connection's identity proves
    /// party 0's key with a clock 10 minutes off, or proves the key that
    /// party 1's list gives for party 2 (its lines 0 and 2 swapped), or
    /// proves no key party 1 holds: all three were told the keys were
    /// wrong or party 0 was not running (user probes: a host without NTP,
    /// a reordered CRYPTGPU_PUBKEYS); each is now named as such. A genuine
    /// identity within the skew (a replay when taken twice) says nothing.
    #[test]
    fn why_an_identity_proved_no_key_is_named() {
        let keys = link_keys();
        let now = minute_now();
        let made = |k: &LinkKeys, minute: u64| {
            let nonce = "0123456789abcdef";
            let t = noise::identity_tag(k, 0, 0, 1, minute, nonce.as_bytes()).unwrap();
            format!("cryptgpu-party-0/{minute}/{nonce}/{}", noise::hex(&t)).into_bytes()
        };
        assert_eq!(why_unproved(&keys[1], 1, &made(&keys[0], now)), None);
        let mut swapped = keys[1].clone();
        swapped.publics.swap(0, 2);
        let stranger = link_keys();
        // (10 minutes off, or 9 or 11 when a minute turns meanwhile)
        let cases = [
            (
                &keys[1],
                made(&keys[0], now + 10),
                "minute(s) ahead of this host's",
            ),
            (
                &keys[1],
                made(&keys[0], now - 10),
                "minute(s) behind this host's",
            ),
            (
                &swapped,
                made(&keys[0], now),
                "list (CRYPTGPU_PUBKEYS) gives for party 2",
            ),
            (
                &keys[1],
                made(&stranger[0], now),
                "no public key this party holds proves",
            ),
        ];
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        for (mine, id, said) in cases {
            let addrs = [free(), free(), free()];
            // parties 0 and 2: ROUTER sockets that answer nothing
            let mut sinks: Vec<RouterSocket> = Vec::new();
            for a in [addrs[0], addrs[2]] {
                let mut s = RouterSocket::new();
                rt.block_on(s.bind(&format!("tcp://{a}"))).unwrap();
                sinks.push(s);
            }
            let e = std::thread::scope(|sc| {
                let h = sc.spawn(|| {
                    let wait = Duration::from_secs(2);
                    ZmqTransport::connect(1, &addrs, None, wait, Some(mine))
                });
                std::thread::sleep(Duration::from_millis(300));
                let c = connect_as(addrs[1], &id);
                let r = h.join().unwrap();
                drop(c);
                r
            });
            let e = e.err().expect("party 0 never answers").to_string();
            assert!(e.contains(said), "{e}");
            assert!(!e.contains("not running"), "{e}");
        }
    }

    /// An identity that proved a key on one connection is a stranger's on
    /// the next (a recording replayed to the same process, in its next
    /// session: a user probe ended a second `init()` with it): its
    /// connection may announce 64 KiB at most, and is evictable.
    #[test]
    fn an_identity_proves_a_key_once() {
        use std::io::Write;
        let keys = link_keys();
        let inner = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inner_addr = inner.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in inner.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut c = c;
                    let mut buf = [0u8; 65536];
                    while matches!(std::io::Read::read(&mut c, &mut buf), Ok(n) if n > 0) {}
                });
            }
        });
        let k0 = keys[0].clone();
        let verify: Verifier = Arc::new(move |id: &[u8]| verify_identity(&k0, 0, id));
        let g = FrameGuard::spawn(free(), inner_addr.into(), 1 << 30, Some(verify)).unwrap();
        let id = identity_to(1, 0, Some(&keys[1]));
        for _ in 0..2 {
            let mut c = std::net::TcpStream::connect(g.addr()).unwrap();
            let mut m = vec![0xffu8, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 3, 0];
            m.resize(64, 0);
            let mut ready = vec![5u8];
            ready.extend_from_slice(b"READY");
            ready.extend_from_slice(b"\x08Identity");
            ready.extend_from_slice(&(id.len() as u32).to_be_bytes());
            ready.extend_from_slice(&id);
            m.extend_from_slice(&[0b100, ready.len() as u8]);
            m.extend_from_slice(&ready);
            m.extend_from_slice(&zmtp_frame(&vec![1u8; 1 << 20]));
            let _ = c.write_all(&m);
            std::thread::sleep(Duration::from_millis(200));
        }
        let cut = g.stats.oversized.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(cut, 1, "the replay, not the first connection, is cut");
    }

    /// A proxy in front of `to` that forwards both ways and adds 2^40 to
    /// the length of the first message frame above 64 KiB it sees from the
    /// client (a bit flipped on the wire).
    fn flipping_proxy(to: SocketAddr) -> SocketAddr {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let Ok(s) = std::net::TcpStream::connect(to) else {
                    continue;
                };
                let (mut c2, mut s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut b = [0u8; 65536];
                    while let Ok(n @ 1..) = s2.read(&mut b) {
                        if c2.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c2.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let (mut c, mut s) = (c, s);
                    // the stream so far, until the flip; then forwarded as is
                    let (mut seen, mut flipped, mut at) = (Vec::new(), false, 64usize);
                    let mut b = [0u8; 65536];
                    while let Ok(n @ 1..) = c.read(&mut b) {
                        if flipped {
                            if s.write_all(&b[..n]).is_err() {
                                break;
                            }
                            continue;
                        }
                        seen.extend_from_slice(&b[..n]);
                        // walk the frame headers that arrived whole
                        while at < seen.len() {
                            let flags = seen[at];
                            let h = if flags & 0b10 != 0 { 9 } else { 2 };
                            let Some(l) = seen.get(at + 1..at + h) else {
                                break;
                            };
                            let len = l.iter().fold(0usize, |a, &x| a << 8 | usize::from(x));
                            if flags & 0b110 == 0b10 && len > 65536 {
                                seen[at + 3] ^= 1; // + 2^40
                                flipped = true;
                                break;
                            }
                            at += h + len;
                        }
                        // forward all but a header still incomplete
                        let upto = if flipped {
                            seen.len()
                        } else {
                            at.min(seen.len())
                        };
                        if s.write_all(&seen[..upto]).is_err() {
                            break;
                        }
                        seen.drain(..upto);
                        at = at.saturating_sub(upto);
                    }
                    let _ = s.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        at
    }

    /// A bit flipped in a frame's length on the wire, between party 0 and
    /// party 1: party 1's guard cuts the connection, and party 1 said that
    /// CRYPTGPU_MAX_FRAME_BYTES was too small for the program (a user
    /// probe). At the default limit, the largest message the protocol
    /// sends, no party sends a larger frame: it is named as corruption or
    /// tampering.
    #[test]
    fn a_corrupted_frame_length_is_not_blamed_on_the_limit() {
        let (addrs, keys) = ([free(), free(), free()], link_keys());
        let proxy = flipping_proxy(addrs[1]);
        let errs: Vec<String> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..3)
                .map(|r| {
                    let keys = &keys;
                    sc.spawn(move || {
                        let mut seen = addrs;
                        if r == 0 {
                            seen[1] = proxy;
                        }
                        let wait = Duration::from_secs(10);
                        let mut t =
                            ZmqTransport::connect(r, &seen, None, wait, Some(&keys[r])).unwrap();
                        t.failed = true;
                        match r {
                            0 => {
                                t.send(Peer::Next, Msg::Data(1, vec![3; 100_000])).unwrap();
                                std::thread::sleep(Duration::from_secs(2));
                                String::new()
                            }
                            1 => t.recv(Peer::Prev).unwrap_err().to_string(),
                            _ => String::new(),
                        }
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let e = &errs[1];
        assert!(e.contains("party 0 closed its link"), "{e}");
        assert!(e.contains("corrupted or tampered with on the way"), "{e}");
        assert!(!e.contains("too small"), "{e}");
    }

    #[test]
    fn malformed_messages_are_errors() {
        let (rt, addrs, _sinks, mut t) = party_zero();
        let mut raw = DealerSocket::new();
        rt.block_on(raw.connect(&format!("tcp://{}", addrs[0])))
            .unwrap();
        let mut inject = |frames: Vec<Vec<u8>>| {
            let mut it = frames.into_iter();
            let mut m = ZmqMessage::from(it.next().unwrap_or_default());
            for f in it {
                m.push_back(f.into());
            }
            rt.block_on(raw.send(m)).unwrap();
        };
        let frame = |body: &[u8]| {
            let mut m = vec![1u8, FRAME];
            m.extend_from_slice(body);
            m
        };
        let oversized = (crate::net::tcp::MAX_WORDS + 1).to_le_bytes();
        let truncated = {
            let mut v = 4u64.to_le_bytes().to_vec();
            v.extend_from_slice(&[1, 2, 3]);
            v
        };
        let cases: Vec<Vec<Vec<u8>>> = vec![
            vec![vec![1]],
            vec![vec![1, FRAME], vec![0; 8]],
            vec![vec![7, FRAME]],
            vec![frame(&oversized)],
            vec![frame(&truncated)],
            vec![vec![1, HANDSHAKE, 1, 2]],
        ];
        for c in cases {
            inject(c.clone());
            let r = t.recv(Peer::Next);
            assert!(r.is_err(), "{c:?} was accepted");
            t.pending = Default::default();
        }
        // A well-formed frame still works after the garbage.
        let mut ok = Vec::new();
        encode_frame(&Msg::Data(4, vec![5, 6]), &mut ok);
        inject(vec![frame(&ok)]);
        assert_eq!(t.recv(Peer::Next).unwrap(), (4, vec![5, 6]));
        // and so does a large one, which the guard forwards in parts
        let words: Vec<u64> = (0..700_000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9))
            .collect();
        let mut big = Vec::new();
        encode_frame(&Msg::Data(8, words.clone()), &mut big);
        inject(vec![frame(&big)]);
        assert_eq!(t.recv(Peer::Next).unwrap(), (8, words));
        t.failed = true;
    }
}
