//! A transport between processes over plain TCP, one stream per neighbour
//! (party i connects to party i+1 and accepts party i-1). Frames are a
//! little-endian u64 length then that many u64 words; an abort frame carries
//! the failing party's message. Every read and write has the session's
//! timeout, and a frame longer than `MAX_WORDS` is an error, never an
//! allocation.
//!
//! With keys, each link runs a Noise_KK handshake (X25519, ChaCha20-Poly1305,
//! BLAKE2s; the `snow` crate) right after connecting: both ends must hold
//! the other's static public key, so a party with a wrong or missing key is
//! refused there, and every frame after it is encrypted and authenticated
//! in chunks of at most 65 519 bytes. ZeroMQ (zmq/) is the default
//! transport; this one is kept as `CRYPTGPU_TRANSPORT=tcp`. Writes go through
//! a writer thread per link, so sends never block on the peer.

use crate::error::{EngineError, Result};
use crate::net::noise;
pub use crate::net::noise::{generate_keypair, LinkKeys};
use crate::net::{farewell, Farewell, Msg, Peer, Transport};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

mod handshake;
mod watch;
use handshake::{admit, answer_latecomer, greet_and_handshake, Attempt};

pub use crate::net::frame::{encode_frame, largest_message, read_frame, write_frame, MAX_WORDS};

/// One link: a stream, and its Noise transport state when encrypted. Reads
/// go through a buffer of decrypted bytes, so frame decoding is the same.
struct Link {
    stream: TcpStream,
    noise: Option<snow::TransportState>,
    buf: Vec<u8>,
    pos: usize,
    /// Frames go to a writer thread, so a party's send never waits for its
    /// neighbour to read: with every party sending a large message to its
    /// next party before receiving, blocking writes fill the kernel
    /// buffers of all three links and deadlock (seen at 5.8 MB messages).
    writer: Option<Writer>,
    /// Frames read while this party waited for the other neighbour
    /// (`TcpTransport::watch`), not asked for yet; an error read there
    /// ends the list (and the watching: `ended`).
    early: VecDeque<std::io::Result<Msg>>,
    ended: bool,
}

struct Writer {
    tx: crossbeam_channel::Sender<Vec<u8>>,
    handle: std::thread::JoinHandle<()>,
    error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl Writer {
    fn spawn(stream: &TcpStream) -> std::io::Result<Writer> {
        let mut s = stream.try_clone()?;
        let (tx, rx) = crossbeam_channel::unbounded::<Vec<u8>>();
        let error = std::sync::Arc::new(std::sync::Mutex::new(None));
        let err = error.clone();
        let handle = std::thread::Builder::new()
            .name("cryptgpu-tcp-writer".into())
            .spawn(move || {
                for bytes in rx {
                    if let Err(e) = s.write_all(&bytes) {
                        if let Ok(mut slot) = err.lock() {
                            *slot = Some(e.to_string());
                        }
                        return;
                    }
                }
                let _ = s.flush();
            })?;
        Ok(Writer { tx, handle, error })
    }
}

impl Read for Link {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let Some(noise) = self.noise.as_mut() else {
            return self.stream.read(out);
        };
        if self.pos == self.buf.len() {
            let mut l = [0u8; 2];
            self.stream.read_exact(&mut l)?;
            let mut ct = vec![0u8; u16::from_le_bytes(l) as usize];
            self.stream.read_exact(&mut ct)?;
            self.buf.clear();
            noise::open_chunk(noise, &ct, &mut self.buf)?;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Link {
    fn new(stream: TcpStream, noise: Option<snow::TransportState>) -> std::io::Result<Link> {
        let writer = Some(Writer::spawn(&stream)?);
        Ok(Link {
            stream,
            noise,
            buf: Vec::new(),
            pos: 0,
            writer,
            early: VecDeque::new(),
            ended: false,
        })
    }

    /// Queue a frame for the writer thread (sealed first on encrypted
    /// links); an earlier write failure is reported here.
    fn send(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        let out = match self.noise.as_mut() {
            Some(noise) => noise::seal(noise, &bytes)?,
            None => bytes,
        };
        let w = self
            .writer
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the link is closed"))?;
        if let Some(e) = w.error.lock().ok().and_then(|e| e.clone()) {
            return Err(std::io::Error::other(e));
        }
        w.tx.send(out)
            .map_err(|_| std::io::Error::other("the link's writer stopped"))
    }

    /// Write out everything queued, then stop the writer thread.
    fn flush_and_close(&mut self) {
        if let Some(w) = self.writer.take() {
            drop(w.tx);
            let _ = w.handle.join();
        }
    }

    /// End this party's side of the stream (after `flush_and_close`), then
    /// read the neighbour's frames until its end of stream, at most until
    /// `deadline`: its abort notice, and its messages never read.
    fn farewell(&mut self, who: usize, deadline: Instant) -> Farewell {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let (mut abort, mut unread) = (None, 0);
        // frames read early (while this party waited for the other neighbour)
        while let Some(m) = self.early.pop_front() {
            match m {
                Ok(Msg::Data(..)) => unread += 1,
                Ok(Msg::Abort(why)) => abort = Some(why),
                Err(_) => self.ended = true,
            }
            if abort.is_some() || self.ended {
                return Farewell { who, abort, unread };
            }
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match read_frame(self) {
                Ok(Msg::Data(..)) => unread += 1,
                Ok(Msg::Abort(why)) => {
                    abort = Some(why);
                    break;
                }
                Err(_) => break, // its end of stream, or the deadline
            }
        }
        Farewell { who, abort, unread }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.flush_and_close();
    }
}

pub struct TcpTransport {
    rank: usize,
    next: Link,
    prev: Link,
    /// This party failed (an error, or an abort it sent), or its session
    /// is closed: `close` reads no farewell.
    failed: bool,
    /// How long `close` waits for the neighbours' ends of stream.
    grace: Duration,
    /// The session's timeout: how long a party waits for a neighbour.
    timeout: Duration,
    /// The listener, kept while the session runs to refuse a party that
    /// dials this one by mistake (`Latecomers`).
    latecomers: Option<Latecomers>,
}

/// The port of a party whose links are up, answered until its session
/// ends: a party whose peer list names this party's address for another
/// (lists in another order) is refused with that reason at once; it saw
/// a closed port and dialled to its timeout, reporting nothing.
struct Latecomers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Latecomers {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Answer the connections to `listener` (`answer_latecomer`) until `done`,
/// or, with `why` (this party gave up), until the previous party is told.
fn answer_latecomers(
    listener: &TcpListener,
    p: usize,
    encrypted: bool,
    why: Option<&str>,
    done: impl Fn() -> bool,
) {
    while !done() {
        match listener.accept() {
            Ok((s, _)) => {
                if answer_latecomer(s, p, encrypted, why) && why.is_some() {
                    return;
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

pub(super) fn peer_err(
    rank: usize,
    who: usize,
    what: &str,
    e: impl std::fmt::Display,
) -> EngineError {
    EngineError::Peer(format!("party {rank}: {what} party {who}: {e}"))
}

/// Tell the neighbour at the other end of `link` (up, handshake done) why
/// this party gives up its set-up, in an abort frame, before the link
/// closes.
fn abort_on((stream, noise): Linked, why: &EngineError) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    if let Ok(mut link) = Link::new(stream, noise) {
        let mut bytes = Vec::new();
        encode_frame(&Msg::Abort(why.reason()), &mut bytes);
        let _ = link.send(bytes);
        link.flush_and_close();
    }
}

/// How long an accepted connection has to greet (and, with keys, to open
/// the handshake) before it is dropped as a stranger's.
pub(super) const GREET_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) type Linked = (TcpStream, Option<snow::TransportState>);

pub(super) fn set_timeouts(s: &TcpStream, t: Duration) -> std::io::Result<()> {
    s.set_read_timeout(Some(t))?;
    s.set_write_timeout(Some(t))?;
    s.set_nodelay(true)
}

/// The outgoing link: connect to the next party, greet with our rank and,
/// with keys, run the initiator side of the handshake. A connection that
/// is refused, reset or closed before the neighbour answers is dialled
/// again, with backoff, until the deadline: the neighbour may not listen
/// yet (started late, restarted, a proxy not ready), or its accepting
/// side may have cut this connection to make room while strangers crowded
/// its port. Only an answer ends it early: a refusal (its reason said), or
/// a handshake answer that does not authenticate (the keys).
fn dial(
    rank: usize,
    n: usize,
    addr: SocketAddr,
    deadline: Instant,
    keys: Option<&LinkKeys>,
) -> Result<Linked> {
    let mut backoff = Duration::from_millis(20);
    let (mut dropped, mut last) = (0usize, String::new());
    loop {
        if Instant::now() > deadline {
            let why = if dropped == 0 {
                String::new()
            } else {
                format!(
                    "; {dropped} connection(s) were closed or reset before party {n} answered \
                     (the last: {last}): is party {n} running with the same settings (transport, \
                     encryption)?"
                )
            };
            return Err(EngineError::Peer(format!(
                "party {rank} could not reach party {n} at {addr} in time{why}"
            )));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = left.clamp(Duration::from_millis(1), Duration::from_millis(200));
        let conn = TcpStream::connect_timeout(&addr, wait).ok();
        // a connection to itself (a free local port in the ephemeral range)
        // echoes the greeting, which read as an unknown answer
        if let Some(mut s) = conn.filter(|s| s.local_addr().ok() != s.peer_addr().ok()) {
            let left = deadline.saturating_duration_since(Instant::now());
            set_timeouts(&s, left.max(Duration::from_millis(1)))
                .map_err(|e| peer_err(rank, n, "cannot use the link to", e))?;
            match greet_and_handshake(&mut s, keys, rank, n, deadline) {
                Ok(t) => return Ok((s, t)),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Lost(e)) => {
                    dropped += 1;
                    last = e;
                }
            }
        }
        if crate::net::interrupted() {
            return Err(crate::net::interrupted_error(
                rank,
                &format!("dialling party {n}"),
            ));
        }
        std::thread::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())));
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// Connections checked at once before the oldest is cut for a newcomer.
const MAX_ADMITTING: usize = 64;

/// The incoming link: accept until a connection passes `admit`. Each
/// accepted connection is checked in its own thread, so strangers (wrong
/// greeting, silence, a failed handshake) hold only their own thread, for
/// at most GREET_TIMEOUT, and never the listener. When `MAX_ADMITTING`
/// connections are being checked, a newcomer makes room by cutting the
/// oldest of them (a party greets and completes its handshake in
/// milliseconds; a silent stranger never does, and a party whose
/// connection was cut dials again), up to twice the bound while the cut
/// ones wind down: idle connections cannot keep the real peer out.
/// Refusals are counted for the timeout error.
fn accept_prev(
    rank: usize,
    p: usize,
    listener: &TcpListener,
    deadline: Instant,
    keys: Option<&LinkKeys>,
    failed: &std::sync::atomic::AtomicBool,
) -> Result<Linked> {
    let (tx, rx) = std::sync::mpsc::channel::<(u64, Result<Linked>)>();
    let (mut refused, mut last, mut checking) = (0usize, String::new(), 0usize);
    let mut evicted = 0usize;
    // the connections being checked, oldest first: (number, a handle to cut it)
    let mut queue: std::collections::VecDeque<(u64, TcpStream)> = Default::default();
    let mut count = 0u64;
    loop {
        while let Ok((id, r)) = rx.try_recv() {
            checking -= 1;
            queue.retain(|(m, _)| *m != id);
            match r {
                Ok(l) => return Ok(l),
                Err(e) => {
                    refused += 1;
                    last = e.reason();
                }
            }
        }
        if failed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(EngineError::Peer(format!(
                "party {rank} stopped waiting for party {p}: its link to party {} failed",
                (rank + 1) % 3
            )));
        }
        if Instant::now() > deadline {
            let mut why = String::new();
            if refused > 0 {
                why = format!("; {refused} connection(s) refused, the last because: {last}");
            }
            if evicted > 0 {
                why.push_str(&format!(
                    "; {evicted} connection(s) still silent were cut to make room for newer ones"
                ));
            }
            if why.is_empty() {
                why = format!(
                    " (is party {p} running, with the same transport and CRYPTGPU_PEERS list, in \
                     the same order?)"
                );
            }
            return Err(EngineError::Peer(format!(
                "party {rank} was not reached by party {p} in time{why}"
            )));
        }
        match listener.accept() {
            Ok((s, _)) => {
                if queue.len() >= MAX_ADMITTING {
                    match queue.pop_front() {
                        Some((_, old)) if checking < 2 * MAX_ADMITTING => {
                            let _ = old.shutdown(std::net::Shutdown::Both);
                            evicted += 1;
                        }
                        other => {
                            if let Some(o) = other {
                                queue.push_front(o);
                            }
                            drop(s);
                            refused += 1;
                            last = format!(
                                "more than {} connections were being checked",
                                2 * MAX_ADMITTING
                            );
                            continue;
                        }
                    }
                }
                count += 1;
                let id = count;
                let handle = s.try_clone();
                let (tx, keys) = (tx.clone(), keys.cloned());
                let spawned = std::thread::Builder::new()
                    .name(format!("cryptgpu-admit-{rank}"))
                    .spawn(move || {
                        let _ = tx.send((id, admit(s, rank, p, keys.as_ref())));
                    });
                match spawned {
                    Ok(_) => {
                        checking += 1;
                        if let Ok(h) = handle {
                            queue.push_back((id, h));
                        }
                    }
                    Err(e) => {
                        refused += 1;
                        last = format!("no thread to check it: {e}");
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(peer_err(rank, p, "cannot accept", e)),
        }
    }
}

impl TcpTransport {
    /// Listen on `addrs[rank]`, connect to the next party and accept the
    /// previous one, all within `timeout`. The two links are set up at once
    /// (the outgoing one in its own thread), so each party's handshakes
    /// depend only on its neighbours having started: no ordering, no
    /// deadlock, and a stranger on the port is dropped without ending
    /// anything.
    pub fn connect(
        rank: usize,
        addrs: &[SocketAddr; 3],
        timeout: Duration,
        keys: Option<&LinkKeys>,
    ) -> Result<TcpTransport> {
        if rank > 2 {
            return Err(EngineError::Invalid(format!(
                "rank must be 0, 1 or 2, got {rank}"
            )));
        }
        let listener = TcpListener::bind(addrs[rank]).map_err(|e| {
            EngineError::Unavailable(format!(
                "party {rank} cannot listen on {}: {e}",
                addrs[rank]
            ))
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| EngineError::Peer(e.to_string()))?;
        let (n, p) = ((rank + 1) % 3, (rank + 2) % 3);
        let deadline = Instant::now() + timeout;
        // a failed dial (a refusal, a neighbour on another transport) ends
        // the wait for the previous party at once: the session cannot start
        let failed = std::sync::atomic::AtomicBool::new(false);
        let (out, inc) = std::thread::scope(|sc| {
            let h = sc.spawn(|| {
                let r = dial(rank, n, addrs[n], deadline, keys);
                if r.is_err() {
                    failed.store(true, std::sync::atomic::Ordering::Release);
                }
                r
            });
            let inc = accept_prev(rank, p, &listener, deadline, keys, &failed);
            let out = h
                .join()
                .unwrap_or_else(|_| Err(EngineError::Internal("the dial thread panicked".into())));
            (out, inc)
        });
        // Given up: a neighbour whose link is up is told why on it (it may
        // wait for this party's first message already, and took the closed
        // link for this party's end: a user probe's party named a party
        // that was alive); without a link from the previous party, it is
        // told (the dial's failure first) if it dials within 3 s: it found
        // a closed port before and dialled to its timeout.
        let (e, latecomers) = match (out, inc) {
            (Ok(next), Ok(prev)) => {
                return Self::linked(rank, next, prev, listener, timeout, keys.is_some())
            }
            (Err(e), Ok(prev)) => {
                abort_on(prev, &e);
                (e, false)
            }
            (Ok(next), Err(e)) => {
                abort_on(next, &e);
                (e, true)
            }
            (Err(e), Err(_)) => (e, true),
        };
        if latecomers {
            let left = deadline.saturating_duration_since(Instant::now());
            let until = Instant::now() + left.min(Duration::from_secs(3));
            let why = e.reason();
            answer_latecomers(&listener, p, keys.is_some(), Some(&why), || {
                Instant::now() >= until || crate::net::interrupted()
            });
        }
        Err(e)
    }

    /// The transport once both links are up: the listener goes on answering
    /// parties that dial it by mistake (`Latecomers`).
    fn linked(
        rank: usize,
        (next, nn): Linked,
        (prev, pn): Linked,
        listener: TcpListener,
        timeout: Duration,
        encrypted: bool,
    ) -> Result<TcpTransport> {
        let p = (rank + 2) % 3;
        let io = |e: std::io::Error| EngineError::Peer(format!("party {rank}: {e}"));
        for s in [&next, &prev] {
            set_timeouts(s, timeout).map_err(io)?;
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("cryptgpu-latecomers-{rank}"))
            .spawn(move || {
                answer_latecomers(&listener, p, encrypted, None, || {
                    stop2.load(std::sync::atomic::Ordering::Acquire)
                })
            })
            .ok();
        Ok(TcpTransport {
            rank,
            next: Link::new(next, nn).map_err(io)?,
            prev: Link::new(prev, pn).map_err(io)?,
            failed: false,
            grace: timeout.min(Duration::from_secs(5)),
            timeout,
            latecomers: Some(Latecomers { stop, handle }),
        })
    }

    fn stream(&mut self, p: Peer) -> &mut Link {
        match p {
            Peer::Next => &mut self.next,
            Peer::Prev => &mut self.prev,
        }
    }
}

impl Transport for TcpTransport {
    fn send(&mut self, to: Peer, msg: Msg) -> Result<()> {
        let (rank, who) = (self.rank, to.rank(self.rank));
        self.failed |= matches!(msg, Msg::Abort(_));
        let mut bytes = Vec::new();
        encode_frame(&msg, &mut bytes);
        self.stream(to)
            .send(bytes)
            .map_err(|e| peer_err(rank, who, "cannot send to", e))
    }

    fn recv(&mut self, from: Peer) -> Result<(u64, Vec<u64>)> {
        let r = self.recv_watching(from);
        self.failed |= r.is_err();
        r
    }

    /// Flush the queued frames to both neighbours; then, unless this party
    /// failed, end both streams and read what the neighbours sent until
    /// their ends (at most `grace`), judged by `net::farewell`: a
    /// neighbour's abort that this party never read is the error.
    fn close(&mut self) -> Result<()> {
        self.latecomers = None; // the port closes
        self.next.flush_and_close();
        self.prev.flush_and_close();
        if std::mem::replace(&mut self.failed, true) {
            return Ok(());
        }
        let deadline = Instant::now() + self.grace;
        let (n, p) = ((self.rank + 1) % 3, (self.rank + 2) % 3);
        let (next, prev) = (&mut self.next, &mut self.prev);
        let heard = std::thread::scope(|sc| {
            let h = sc.spawn(|| next.farewell(n, deadline));
            let b = prev.farewell(p, deadline);
            let a = h.join().unwrap_or(Farewell {
                who: n,
                abort: None,
                unread: 0,
            });
            [a, b]
        });
        farewell(self.rank, &heard)
    }
}

impl TcpTransport {
    /// A frame read from `from`, or why reading it failed, as `recv` says it.
    fn judge(&self, from: Peer, got: std::io::Result<Msg>) -> Result<(u64, Vec<u64>)> {
        let (rank, who) = (self.rank, from.rank(self.rank));
        match got {
            Ok(Msg::Data(tag, v)) => Ok((tag, v)),
            Ok(Msg::Abort(why)) => Err(EngineError::Peer(format!("party {who} aborted: {why}"))),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(crate::net::zmq::running_timeout(rank, who, true, None))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                // as the ZeroMQ transport says it (the raw text was
                // "failed to fill whole buffer")
                Err(EngineError::Peer(format!(
                    "party {rank}: party {who} closed its link (the process exited or the \
                     connection broke)"
                )))
            }
            Err(e) => Err(peer_err(rank, who, "lost the link to", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_roundtrip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Msg::Data(9, vec![1, u64::MAX, 3])).unwrap();
        write_frame(&mut buf, &Msg::Abort("boom".into())).unwrap();
        let mut r = &buf[..];
        assert!(
            matches!(read_frame(&mut r).unwrap(), Msg::Data(9, v) if v == vec![1, u64::MAX, 3])
        );
        assert!(matches!(read_frame(&mut r).unwrap(), Msg::Abort(s) if s == "boom"));
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let mut buf = (MAX_WORDS + 1).to_le_bytes().to_vec();
        buf.extend_from_slice(&[0; 16]);
        assert!(read_frame(&mut &buf[..]).is_err());
        let mut short = 3u64.to_le_bytes().to_vec();
        short.extend_from_slice(&[1; 20]);
        assert!(read_frame(&mut &short[..]).is_err());
    }

    /// Party 0 cannot reach party 1 (its peer list names a closed port for
    /// it) while its link from party 2 is up, and party 1 is never reached
    /// by party 0 while its link to party 2 is up. Each gave up and closed
    /// the link that was up, and party 2, whose links were both up, said
    /// "party 0 closed its link", naming a party that was alive (a user
    /// probe, with party 1 killed during init). Each now tells the
    /// neighbour whose link is up why, on that link.
    #[test]
    fn a_party_that_gives_up_tells_the_neighbour_whose_link_is_up() {
        let addrs: [SocketAddr; 3] = std::array::from_fn(|_| {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        });
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let kp: Vec<_> = (0..3).map(|_| generate_keypair().unwrap()).collect();
        let publics = [kp[0].1, kp[1].1, kp[2].1];
        let errs: Vec<String> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..3)
                .map(|r| {
                    let kp = &kp;
                    sc.spawn(move || {
                        let keys = LinkKeys {
                            private: kp[r].0,
                            publics,
                            job: [0; 32],
                        };
                        let (mut seen, wait) = (addrs, [1500, 3000, 10_000][r]);
                        if r == 0 {
                            seen[1] = closed;
                        }
                        let wait = Duration::from_millis(wait);
                        let t = TcpTransport::connect(r, &seen, wait, Some(&keys));
                        match (r, t) {
                            (2, Ok(mut t)) => {
                                let a = t.recv(Peer::Next).unwrap_err().to_string();
                                let b = t.recv(Peer::Prev).unwrap_err().to_string();
                                format!("{a}\n{b}")
                            }
                            (_, t) => t.err().map(|e| e.to_string()).unwrap_or_default(),
                        }
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(errs[0].contains("could not reach party 1"), "{}", errs[0]);
        let (a, b) = errs[2].split_once('\n').unwrap();
        assert!(
            a.contains("party 0 aborted: party 0 could not reach party 1"),
            "{a}"
        );
        assert!(
            b.contains("party 1 aborted: party 1 was not reached by party 0"),
            "{b}"
        );
    }

    /// Three parties on encrypted TCP links; `act` runs on each party's
    /// transport (by rank) before all three close at once; their closes.
    fn close_after(act: impl Fn(usize, &mut TcpTransport) + Sync) -> Vec<Result<()>> {
        let addrs: [SocketAddr; 3] = std::array::from_fn(|_| {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        });
        let kp: Vec<_> = (0..3).map(|_| generate_keypair().unwrap()).collect();
        let publics = [kp[0].1, kp[1].1, kp[2].1];
        std::thread::scope(|sc| {
            let hs: Vec<_> = (0..3)
                .map(|r| {
                    let (kp, act) = (&kp, &act);
                    sc.spawn(move || {
                        let keys = LinkKeys {
                            private: kp[r].0,
                            publics,
                            job: [0; 32],
                        };
                        let wait = Duration::from_secs(10);
                        let mut t = TcpTransport::connect(r, &addrs, wait, Some(&keys)).unwrap();
                        act(r, &mut t);
                        t.close()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    /// A party that finished while a neighbour aborted after its last
    /// operation learns it at close (it exited 0 while the other two
    /// raised PeerError, a user probe); the party that aborted, and one
    /// that ends with nothing unread, close quietly.
    #[test]
    fn a_neighbours_abort_read_at_close_is_the_error() {
        let t0 = Instant::now();
        let ends = close_after(|r, t| {
            if r == 1 {
                t.send(Peer::Prev, Msg::Abort("out of step: boom".into()))
                    .unwrap();
            }
        });
        let e = ends[0].as_ref().unwrap_err().to_string();
        assert!(
            e.contains("party 0 finished, but party 1 failed") && e.contains("boom"),
            "{e}"
        );
        assert!(ends[1].is_ok() && ends[2].is_ok(), "{ends:?}");
        assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
        // nothing unread: every close is clean (and quick, each neighbour
        // ending its stream at its own close)
        let t0 = Instant::now();
        assert!(close_after(|_, _| {}).iter().all(|e| e.is_ok()));
        assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    }

    /// A protocol message a party never read fails its close (it was said
    /// on stderr only, and the party exited 0: a user probe).
    #[test]
    fn a_message_never_read_is_the_error_at_close() {
        let ends = close_after(|r, t| {
            if r == 1 {
                t.send(Peer::Prev, Msg::Data(7, vec![1, 2])).unwrap();
            }
        });
        let e = ends[0].as_ref().unwrap_err().to_string();
        assert!(e.contains("party 1 sent 1 protocol message(s)"), "{e}");
        assert!(ends[1].is_ok() && ends[2].is_ok(), "{ends:?}");
    }

    /// Party 0 waits for party 2 while party 1 aborts: the abort is the
    /// error at once (it waited out the timeout, and blamed party 2); a
    /// frame party 1 sent before it is read, and kept, on the way.
    #[test]
    fn a_party_waiting_on_one_neighbour_hears_the_others_abort() {
        close_after(|r, t| match r {
            0 => {
                let t0 = Instant::now();
                let e = t.recv(Peer::Prev).unwrap_err().to_string();
                assert!(e.contains("party 1 aborted: out of step"), "{e}");
                assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
                assert!(matches!(t.next.early.front(), Some(Ok(Msg::Data(7, _)))));
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

    proptest! {
        // Arbitrary bytes never panic the decoder or allocate past the limit.
        #![proptest_config(ProptestConfig {
            cases: 256,
            rng_seed: proptest::test_runner::RngSeed::Fixed(7),
            ..ProptestConfig::default()
        })]
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = read_frame(&mut &bytes[..]);
        }
    }
}
