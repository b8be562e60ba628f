//! Transports between parties (DESIGN.md layer 3). Replicated sharing only
//! ever talks to the next and the previous party, so a transport is four
//! endpoints. `Comm` wraps a transport and counts every message: bytes,
//! messages and rounds, per operation label.

pub mod guard;
mod local;
pub mod noise;
pub mod tcp;
pub mod zmq;

pub use local::{local_triple, LocalTransport};

use crate::device::Buf;
use crate::error::Result;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Next,
    Prev,
}

impl Peer {
    pub fn rank(self, me: usize) -> usize {
        match self {
            Peer::Next => (me + 1) % 3,
            Peer::Prev => (me + 2) % 3,
        }
    }
}

/// A message on the wire: ring elements, or a notice that the sender failed
/// and the protocol is abandoned (so its neighbours fail fast, not at the
/// timeout).
pub enum Msg {
    Data(Vec<u64>),
    Abort(String),
}

pub trait Transport: Send {
    fn send(&mut self, to: Peer, msg: Msg) -> Result<()>;
    fn recv(&mut self, from: Peer) -> Result<Vec<u64>>;
    /// Send a device buffer. Transports between processes serialise it
    /// (a GPU buffer is copied to the host first); the local transport hands
    /// the buffer itself to the other party's thread.
    fn send_buf(&mut self, to: Peer, data: Buf) -> Result<()> {
        self.send(to, Msg::Data(data.into_vec()?))
    }
    /// Receive a buffer: host memory, or a device buffer handed over by the
    /// local transport (the receiving device adopts it).
    fn recv_buf(&mut self, from: Peer) -> Result<Buf> {
        self.recv(from).map(Buf::Host)
    }
    /// End the session cleanly (transports that buffer sends flush here).
    fn close(&mut self) {}
}

/// Communication counted for one operation label.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpStats {
    pub calls: u64,
    pub rounds: u64,
    pub messages: u64,
    pub bytes: u64,
}

/// A transport plus the counters. Protocols communicate only through
/// `round`, so every message and every round is counted here.
pub struct Comm {
    transport: Box<dyn Transport>,
    op: String,
    stats: BTreeMap<String, OpStats>,
    /// Rounds since the link was made (never reset): whether a call
    /// communicated at all.
    rounds_total: u64,
    /// Bytes sent since the link was made (never reset).
    bytes_total: u64,
}

impl Comm {
    pub fn new(transport: Box<dyn Transport>) -> Self {
        Comm {
            transport,
            op: "setup".into(),
            stats: BTreeMap::new(),
            rounds_total: 0,
            bytes_total: 0,
        }
    }

    /// Rounds run on this link since it was made (statistics resets aside).
    pub fn rounds_total(&self) -> u64 {
        self.rounds_total
    }

    /// (rounds, bytes sent) since the link was made, statistics resets
    /// aside: what per-layer statistics take differences of, without
    /// copying the per-operation table.
    pub fn totals(&self) -> (u64, u64) {
        (self.rounds_total, self.bytes_total)
    }

    /// Label the traffic that follows, and count one call of it.
    pub fn begin_op(&mut self, op: &str) {
        self.op.clear();
        self.op.push_str(op);
        self.stats.entry(self.op.clone()).or_default().calls += 1;
    }

    fn cur(&mut self) -> &mut OpStats {
        self.stats.entry(self.op.clone()).or_default()
    }

    /// One communication round: send the given messages, then receive from
    /// the given peers, in order. Every party calls `round` the same number
    /// of times in a protocol, even with nothing to send, so the round count
    /// is the protocol's latency.
    pub fn round(&mut self, sends: Vec<(Peer, Buf)>, recvs: &[Peer]) -> Result<Vec<Buf>> {
        self.rounds_total += 1;
        {
            let s = self.cur();
            s.rounds += 1;
        }
        for (to, data) in sends {
            let bytes = (data.len() * 8) as u64;
            let s = self.cur();
            s.messages += 1;
            s.bytes += bytes;
            self.bytes_total += bytes;
            self.transport.send_buf(to, data)?;
        }
        recvs.iter().map(|&p| self.transport.recv_buf(p)).collect()
    }

    /// Tell both neighbours this party failed (best effort).
    pub fn abort(&mut self, why: &str) {
        let _ = self.transport.send(Peer::Next, Msg::Abort(why.to_string()));
        let _ = self.transport.send(Peer::Prev, Msg::Abort(why.to_string()));
    }

    /// End the session on this party's links.
    pub fn close(&mut self) {
        self.transport.close();
    }

    pub fn stats(&self) -> &BTreeMap<String, OpStats> {
        &self.stats
    }

    pub fn reset_stats(&mut self) {
        self.stats.clear();
    }
}
