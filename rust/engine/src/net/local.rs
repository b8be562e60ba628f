//! The local transport: three party threads of one process joined by
//! bounded channels; buffers move as they are (a GPU buffer is handed over,
//! not copied).

use super::{Msg, Peer, Transport};
use crate::device::Buf;
use crate::error::{EngineError, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a waiting party looks whether another party failed.
const FAIL_POLL: Duration = Duration::from_millis(20);

/// What the local transport's channels carry: a buffer as it is (host or
/// GPU memory), or an abort notice.
enum LocalMsg {
    Data(u64, Buf),
    Abort(String),
}

/// Three parties in one process: buffers are moved through channels, never
/// serialised or copied; on a GPU the device buffer itself is handed over
/// (no host round trip).
pub struct LocalTransport {
    rank: usize,
    to_next: Sender<LocalMsg>,
    to_prev: Sender<LocalMsg>,
    from_next: Receiver<LocalMsg>,
    from_prev: Receiver<LocalMsg>,
    timeout: Duration,
    /// The first party of the three that failed (rank, why): a party
    /// waiting on another one fails too (two parties waiting on each
    /// other while the third found them out of step waited for the
    /// timeout until 2026-12-07).
    failed: Arc<Mutex<Option<(usize, String)>>>,
}

/// Build the three connected endpoints of a local session.
pub fn local_triple(timeout: Duration) -> Vec<LocalTransport> {
    // Link i carries messages from party i to party i + 1 ("next"), link
    // 3 + i from party i to party i - 1 ("prev"). Protocols send at most a
    // couple of messages per link before receiving, so a small bound never
    // blocks.
    let (to_next, mut from_prev): (Vec<Sender<LocalMsg>>, Vec<Receiver<LocalMsg>>) =
        (0..3).map(|_| bounded(16)).unzip();
    let (to_prev, mut from_next): (Vec<Sender<LocalMsg>>, Vec<Receiver<LocalMsg>>) =
        (0..3).map(|_| bounded(16)).unzip();
    let failed = Arc::new(Mutex::new(None));
    // Party i receives from its previous party p on p's "next" link, and
    // from its next party n on n's "prev" link: rotate the receivers.
    from_prev.rotate_right(1);
    from_next.rotate_left(1);
    to_next
        .into_iter()
        .zip(to_prev)
        .zip(from_next.into_iter().zip(from_prev))
        .enumerate()
        .map(
            |(rank, ((to_next, to_prev), (from_next, from_prev)))| LocalTransport {
                rank,
                to_next,
                to_prev,
                from_next,
                from_prev,
                timeout,
                failed: failed.clone(),
            },
        )
        .collect()
}

impl LocalTransport {
    fn put(&mut self, to: Peer, msg: LocalMsg) -> Result<()> {
        let ch = match to {
            Peer::Next => &self.to_next,
            Peer::Prev => &self.to_prev,
        };
        // An abort notice never waits: a neighbour that stopped reading
        // with a full link already knows something is wrong.
        let sent = match msg {
            LocalMsg::Abort(_) => ch.try_send(msg).map_err(|_| ()),
            _ => ch.send_timeout(msg, self.timeout).map_err(|_| ()),
        };
        sent.map_err(|_| {
            EngineError::Peer(format!(
                "party {} could not send to party {}: link closed or full",
                self.rank,
                to.rank(self.rank)
            ))
        })
    }
}

impl Transport for LocalTransport {
    fn send(&mut self, to: Peer, msg: Msg) -> Result<()> {
        let m = match msg {
            Msg::Data(tag, v) => LocalMsg::Data(tag, Buf::Host(v)),
            Msg::Abort(why) => LocalMsg::Abort(why),
        };
        self.put(to, m)
    }

    fn send_buf(&mut self, to: Peer, tag: u64, data: Buf) -> Result<()> {
        self.put(to, LocalMsg::Data(tag, data))
    }

    fn recv(&mut self, from: Peer) -> Result<(u64, Vec<u64>)> {
        let (tag, b) = self.recv_buf(from)?;
        Ok((tag, b.into_vec()?))
    }

    fn recv_buf(&mut self, from: Peer) -> Result<(u64, Buf)> {
        let ch = match from {
            Peer::Next => &self.from_next,
            Peer::Prev => &self.from_prev,
        };
        let who = from.rank(self.rank);
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match ch.recv_timeout(left.min(FAIL_POLL)) {
                Ok(LocalMsg::Data(tag, v)) => return Ok((tag, v)),
                Ok(LocalMsg::Abort(why)) => {
                    return Err(EngineError::Peer(format!("party {who} aborted: {why}")))
                }
                Err(RecvTimeoutError::Timeout) => {
                    let other = self.failed.lock().ok().and_then(|f| f.clone());
                    if let Some((r, why)) = other.filter(|(r, _)| *r != self.rank) {
                        return Err(EngineError::Peer(format!("party {r} aborted: {why}")));
                    }
                    if Instant::now() >= deadline {
                        // As on the network links: told to the other
                        // neighbour at once (it may be waiting on this party
                        // with about the same deadline), then a last short
                        // wait for `who`'s own abort, which names the party
                        // it waits on in turn (until the thirtieth session a
                        // stuck party 2 was reported by party 0 as "no answer
                        // from party 1", alive; a user probe).
                        let e = crate::net::zmq::running_timeout(self.rank, who, false, None);
                        let tell = match from {
                            Peer::Next => &self.to_prev,
                            Peer::Prev => &self.to_next,
                        };
                        let _ = tell.try_send(LocalMsg::Abort(e.reason()));
                        let until = Instant::now() + self.timeout.min(Duration::from_secs(1));
                        while let Ok(m) =
                            ch.recv_timeout(until.saturating_duration_since(Instant::now()))
                        {
                            if let LocalMsg::Abort(why) = m {
                                return Err(EngineError::Peer(format!(
                                    "party {who} aborted: {why}"
                                )));
                            }
                        }
                        return Err(e);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(EngineError::Peer(format!("party {who} closed its link")))
                }
            }
        }
    }

    fn fail(&mut self, why: &str) {
        if let Ok(mut f) = self.failed.lock() {
            f.get_or_insert_with(|| (self.rank, why.to_string()));
        }
    }
}
