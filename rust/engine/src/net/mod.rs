//! Transports between parties (DESIGN.md layer 3). Replicated sharing only
//! ever talks to the next and the previous party, so a transport is four
//! endpoints. `Comm` wraps a transport and counts every message: bytes,
//! messages and rounds, per operation label.

mod frame;
pub mod guard;
mod identity;
mod local;
pub mod noise;
pub mod tcp;
pub mod zmq;
mod zmtp;

pub use local::{local_triple, LocalTransport};

use crate::device::Buf;
use crate::error::{EngineError, Result};
use std::collections::BTreeMap;
use std::panic::Location;

/// A check the embedding program installs (the Python binding: whether
/// Ctrl-C was pressed) that a party waiting on the network calls every
/// 100 ms or so: true ends the wait with an error, so a run started by hand
/// stops at Ctrl-C instead of at the session's timeout.
static INTERRUPT: std::sync::OnceLock<fn() -> bool> = std::sync::OnceLock::new();

/// Install the interrupt check (once per process; later calls are ignored).
pub fn set_interrupt_check(check: fn() -> bool) {
    let _ = INTERRUPT.set(check);
}

/// Whether the installed check says to stop waiting.
pub(crate) fn interrupted() -> bool {
    INTERRUPT.get().is_some_and(|check| check())
}

/// The error for a wait ended by the interrupt check.
pub(crate) fn interrupted_error(rank: usize, what: &str) -> EngineError {
    EngineError::Peer(format!("party {rank}: interrupted while {what}"))
}

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

/// A message on the wire: ring elements with the sender's step tag (which
/// operation and round of the session it belongs to, see `Comm::tag`), or
/// a notice that the sender failed and the protocol is abandoned (so its
/// neighbours fail fast, not at the timeout).
pub enum Msg {
    Data(u64, Vec<u64>),
    Abort(String),
}

pub trait Transport: Send {
    fn send(&mut self, to: Peer, msg: Msg) -> Result<()>;
    /// The next data message from a peer: (step tag, elements).
    fn recv(&mut self, from: Peer) -> Result<(u64, Vec<u64>)>;
    /// Send a device buffer. Transports between processes serialise it
    /// (a GPU buffer is copied to the host first); the local transport hands
    /// the buffer itself to the other party's thread.
    fn send_buf(&mut self, to: Peer, tag: u64, data: Buf) -> Result<()> {
        self.send(to, Msg::Data(tag, data.into_vec()?))
    }
    /// Receive a buffer: host memory, or a device buffer handed over by the
    /// local transport (the receiving device adopts it).
    fn recv_buf(&mut self, from: Peer) -> Result<(u64, Buf)> {
        self.recv(from).map(|(tag, v)| (tag, Buf::Host(v)))
    }
    /// This party failed (its neighbours are told by an abort notice too):
    /// a transport whose parties share a process also wakes the party
    /// waiting on the third one (see [`local::LocalTransport`]).
    fn fail(&mut self, _why: &str) {}
    /// End the session cleanly (transports that buffer sends flush here).
    /// Err when a neighbour's notice, read at the end, says the session
    /// failed after this party's last operation (see [`farewell`]).
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// What one neighbour sent that a party had not read when its session
/// ended: the neighbour's abort notice (its reason), and how many of its
/// protocol messages were never read. Only messages that authenticate
/// under the link's keys count (on ZeroMQ links a stranger can replay a
/// recorded connection's messages into the party's queue).
pub(crate) struct Farewell {
    pub who: usize,
    pub abort: Option<String>,
    pub unread: usize,
}

/// The end of a session, as both transports judge it. A neighbour that
/// aborted after this party's last operation failed the job though this
/// party finished (a party out of step with only two of the three, say):
/// an error, so that the party's operator does not take its exit for the
/// job's success (the neighbour's own reason comes along; of two, the one
/// that does not itself report a neighbour's abort). Messages never read
/// without an abort mean the parties ran different programs (a
/// rank-dependent branch, such as another `dst` in one party's
/// `get_plain_text`): an error too (it was said on stderr only, and every
/// party exited 0).
pub(crate) fn farewell(rank: usize, heard: &[Farewell]) -> Result<()> {
    let root = heard
        .iter()
        .filter_map(|f| f.abort.as_deref().map(|why| (f.who, why)))
        .min_by_key(|(_, why)| why.contains(" aborted: "));
    if let Some((who, why)) = root {
        return Err(EngineError::Peer(format!(
            "party {rank} finished, but party {who} failed the session after party {rank}'s \
             last operation, so the job did not succeed: party {who} aborted: {why}"
        )));
    }
    let unread: Vec<String> = heard
        .iter()
        .filter(|f| f.unread > 0)
        .map(|f| format!("party {} sent {} protocol message(s)", f.who, f.unread))
        .collect();
    if unread.is_empty() {
        return Ok(());
    }
    Err(EngineError::Peer(format!(
        "party {rank} finished, but {} that party {rank} never read: the parties ran \
         different programs (a rank-dependent branch, such as another dst in one party's \
         get_plain_text), so the job did not succeed",
        unread.join(" and ")
    )))
}

/// FNV-1a of a string, folded to 32 bits: the step tag's first
/// part (stable across processes and builds, unlike `DefaultHasher`).
fn label_hash(op: &str) -> u32 {
    let h = op.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (h ^ (h >> 32)) as u32
}

/// An odd multiplier for the round within an operation, and its inverse
/// modulo 2^16 (the step tag's middle part is a bijection of the round for
/// a given history, so a receiver whose history agrees reads the sender's
/// round back).
const ROUND_MUL: u64 = 0x9e37;
const ROUND_INV: u64 = {
    let mut inv = ROUND_MUL; // right to 3 bits; each step doubles them
    let mut i = 0;
    while i < 4 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(ROUND_MUL.wrapping_mul(inv)));
        i += 1;
    }
    inv & 0xffff
};

/// The step tag's middle 16 bits: 16 bits of the history digest (after a
/// finaliser, so every bit of it counts) xor the round within the
/// operation, multiplied by an odd constant.
fn step_bits(history: u64, op_round: u64) -> u64 {
    let mut h = history;
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    ((h >> 48) ^ op_round.wrapping_mul(ROUND_MUL)) & 0xffff
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
    rank: usize,
    op: String,
    /// The current operation's hash: its label and the line that began it
    /// (the step tag's first part).
    op_hash: u32,
    /// Rounds of the current operation so far (mixed into the step tag's
    /// middle part).
    op_round: u64,
    /// The session's history digest when the current operation began
    /// (runtime/history.rs): the step tag's middle part, with `op_round`.
    history: u64,
    /// The operations (label, runtime line that began it) this party ran, by
    /// their 32-bit hash: to name the step a peer out of step was in.
    labels: BTreeMap<u32, String>,
    stats: BTreeMap<String, OpStats>,
    /// Rounds since the link was made (never reset): whether a call
    /// communicated at all.
    rounds_total: u64,
    /// Bytes sent since the link was made (never reset).
    bytes_total: u64,
}

impl Comm {
    pub fn new(transport: Box<dyn Transport>, rank: usize) -> Self {
        Comm {
            transport,
            rank,
            op: "setup".into(),
            op_hash: 0,
            op_round: 0,
            history: 0,
            labels: BTreeMap::new(),
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

    /// Label the traffic that follows, and count one call of it; the caller's
    /// source line tells operations of one label apart in the step tag.
    #[track_caller]
    pub fn begin_op(&mut self, op: &str) {
        self.begin_op_at(op, Location::caller());
    }

    /// `begin_op` for the call at `site`: the runtime entry point every
    /// party of an operation goes through (the same line on every party,
    /// unlike the protocol's own lines, which may differ by rank).
    pub fn begin_op_at(&mut self, op: &str, site: &'static Location<'static>) {
        self.op.clear();
        self.op.push_str(op);
        self.op_round = 0;
        self.op_hash = label_hash(op)
            ^ label_hash(site.file())
            ^ site.line().rotate_left(16)
            ^ site.column().rotate_left(8);
        if self.labels.len() < 4096 && !self.labels.contains_key(&self.op_hash) {
            let at = format!("'{op}' (called at {}:{})", site.file(), site.line());
            self.labels.insert(self.op_hash, at);
        }
        self.stats.entry(self.op.clone()).or_default().calls += 1;
    }

    /// Mix `what` (a sharing's shape) into the current operation's step tag:
    /// a party whose operation differs in it is then out of step with the
    /// others at the first message (a placeholder of another shape with as
    /// many elements was shared in silence, and opened garbage).
    pub fn salt(&mut self, what: &str) {
        let base = self.labels.get(&self.op_hash).cloned();
        self.op_hash ^= label_hash(what).rotate_left(7);
        if self.labels.len() < 4096 && !self.labels.contains_key(&self.op_hash) {
            let at = base.unwrap_or_else(|| format!("'{}'", self.op));
            self.labels.insert(self.op_hash, format!("{at} of {what}"));
        }
    }

    /// Carry `history` (the session's digest of every operation so far,
    /// local ones included, with their arguments and public constants) in
    /// the step tags of the current operation.
    pub fn set_history(&mut self, history: u64) {
        self.history = history;
    }

    /// The step tag of the next round: the operation's hash (32 bits), 16
    /// bits of the history digest mixed with the round within the operation
    /// ([`step_bits`]), and the rounds since the link was made (16 bits).
    /// Parties running the same program send and expect the same tag in
    /// every round; anything else means they are out of step (different
    /// programs or versions, a rank-dependent branch, or a local step or
    /// public constant that differs) and is reported as such instead of
    /// mixing unrelated shares.
    fn tag(&self) -> u64 {
        (u64::from(self.op_hash) << 32)
            | (step_bits(self.history, self.op_round) << 16)
            | (self.rounds_total & 0xffff)
    }

    /// The sender's round within its operation, read from a tag whose
    /// history agrees with this party's (None where it seems not to: a
    /// round above 1023 is taken for a history that differs).
    fn peer_round(&self, got: u64) -> Option<u64> {
        let r = (((got >> 16) ^ step_bits(self.history, 0)) & 0xffff).wrapping_mul(ROUND_INV);
        Some(r & 0xffff).filter(|&r| r < 1024)
    }

    fn cur(&mut self) -> &mut OpStats {
        self.stats.entry(self.op.clone()).or_default()
    }

    fn describe(&self, tag: u64, round: Option<u64>) -> String {
        let op = match self.labels.get(&((tag >> 32) as u32)) {
            Some(l) => l.clone(),
            None => "an operation this party never ran".to_string(),
        };
        let round = match round {
            Some(r) => format!("round {r} of that operation, "),
            None => "after other operations or public constants, ".to_string(),
        };
        format!("{op} ({round}{} of the session mod 2^16)", tag & 0xffff)
    }

    /// The error for a message of step `got` from `who` where this party
    /// is at step `tag`. Where only the history part differs (the same
    /// operation, begun at the same round), what differs is what the
    /// parties did before: said so, not the (same) operation.
    fn out_of_step(&self, who: usize, got: u64, tag: u64) -> EngineError {
        let me = self.rank;
        let same_op = got >> 32 == tag >> 32 && got & 0xffff == tag & 0xffff;
        let round = self.peer_round(got);
        if same_op && round.is_none() {
            return EngineError::Peer(format!(
                "party {who} is out of step with party {me}: both are in {}, but the operations \
                 or public constants since their previous message differ between their \
                 programs: a local step (reshape, view, flip, transpose, slicing, indexing), a \
                 public constant (a factor, an addend, a public matmul or convolution operand, \
                 a comparison threshold), a sharing's src or a reveal's dst, or an operation run \
                 on one of them only; do all parties run the same program (and the same \
                 cryptgpu version) on the same shapes and public values?",
                self.describe(tag, Some(self.op_round.saturating_sub(1))),
            ));
        }
        EngineError::Peer(format!(
            "party {who} is out of step with party {me}: its message belongs to {} where party \
             {me} is in {}; do all parties run the same program (and the same cryptgpu version) \
             on the same shapes, with the same requires_grad (cryptensor reads it from each \
             party's own argument: a placeholder of the parties other than src that does not \
             require grad, where src's tensor does, records a different protocol; pass \
             requires_grad= alike on every party)?",
            self.describe(got, round),
            self.describe(tag, Some(self.op_round.saturating_sub(1))),
        ))
    }

    /// One communication round: send the given messages, then receive from
    /// the given peers, in order. Every party calls `round` the same number
    /// of times in a protocol, even with nothing to send, so the round count
    /// is the protocol's latency.
    pub fn round(&mut self, sends: Vec<(Peer, Buf)>, recvs: &[Peer]) -> Result<Vec<Buf>> {
        let tag = self.tag();
        self.rounds_total += 1;
        self.op_round += 1;
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
            self.transport.send_buf(to, tag, data)?;
        }
        let mut out = Vec::with_capacity(recvs.len());
        for &p in recvs {
            let (got, buf) = self.transport.recv_buf(p)?;
            if got != tag {
                return Err(self.out_of_step(p.rank(self.rank), got, tag));
            }
            out.push(buf);
        }
        Ok(out)
    }

    /// Tell both neighbours this party failed (best effort), and every
    /// party of a local session (a party waiting on the third one).
    pub fn abort(&mut self, why: &str) {
        self.transport.fail(why);
        self.leave(why);
    }

    /// Tell both neighbours this party left the session (best effort): a
    /// neighbour still waiting for its message fails at once; an exchange
    /// between the other two goes on.
    pub fn leave(&mut self, why: &str) {
        let _ = self.transport.send(Peer::Next, Msg::Abort(why.to_string()));
        let _ = self.transport.send(Peer::Prev, Msg::Abort(why.to_string()));
    }

    /// End the session on this party's links: Err when a neighbour
    /// failed the session after this party's last operation.
    pub fn close(&mut self) -> Result<()> {
        self.transport.close()
    }

    pub fn stats(&self) -> &BTreeMap<String, OpStats> {
        &self.stats
    }

    pub fn reset_stats(&mut self) {
        self.stats.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    type Step = (&'static str, &'static Location<'static>);

    /// Party 0 sends to party 1 in one round of each one's step (label,
    /// line that began it); party 1's result for the round.
    fn one_round(s0: Step, s1: Step) -> Result<Vec<Buf>> {
        one_round_after(s0, s1, (0, 0))
    }

    /// `one_round` with each party's history digest (runtime/history.rs).
    fn one_round_after(s0: Step, s1: Step, history: (u64, u64)) -> Result<Vec<Buf>> {
        let mut ts = local_triple(Duration::from_secs(5)).into_iter();
        let (t0, t1) = (ts.next(), ts.next());
        let (Some(t0), Some(t1)) = (t0, t1) else {
            return Err(EngineError::Internal("no transports".into()));
        };
        let (mut c0, mut c1) = (Comm::new(Box::new(t0), 0), Comm::new(Box::new(t1), 1));
        c0.begin_op_at(s0.0, s0.1);
        c1.begin_op_at(s1.0, s1.1);
        c0.set_history(history.0);
        c1.set_history(history.1);
        c0.round(vec![(Peer::Next, Buf::Host(vec![7]))], &[])?;
        c1.round(vec![], &[Peer::Prev])
    }

    #[test]
    fn parties_in_step_exchange_messages() {
        let here = Location::caller();
        let got = one_round(("mul", here), ("mul", here)).unwrap();
        assert_eq!(got[0].host().unwrap(), &[7]);
    }

    #[test]
    fn a_party_in_another_operation_is_reported_out_of_step() {
        let here = Location::caller();
        let there = Location::caller();
        // Another label, or the same label begun from another line (the
        // runtime's mul by a public factor against a shared one).
        for (a, b) in [
            (("mul", here), ("relu", here)),
            (("mul", here), ("mul", there)),
        ] {
            let Err(e) = one_round(a, b) else {
                panic!("accepted a message of another step");
            };
            let msg = e.to_string();
            assert!(msg.contains("party 0 is out of step with party 1"), "{msg}");
            assert!(msg.contains(&format!("'{}'", b.0)), "{msg}");
        }
    }

    #[test]
    fn parties_of_another_history_are_told_what_differs() {
        let here = Location::caller();
        assert!(one_round_after(("mul", here), ("mul", here), (9, 9)).is_ok());
        let Err(e) = one_round_after(("mul", here), ("mul", here), (9, 10)) else {
            panic!("accepted a message of another history");
        };
        let msg = e.to_string();
        assert!(
            msg.contains("party 0 is out of step with party 1: both are in 'mul'"),
            "{msg}"
        );
        assert!(msg.contains("the operations or public constants"), "{msg}");
    }

    #[test]
    fn the_round_within_an_operation_reads_back_under_one_history() {
        assert_eq!((ROUND_MUL * ROUND_INV) & 0xffff, 1);
        let mut ts = local_triple(Duration::from_secs(5)).into_iter();
        let Some(t) = ts.next() else {
            panic!("no transport");
        };
        let mut c = Comm::new(Box::new(t), 0);
        c.set_history(0x1234_5678_9abc_def0);
        for r in [0, 1, 7, 1023] {
            let got = u64::from(c.op_hash) << 32 | step_bits(c.history, r) << 16;
            assert_eq!(c.peer_round(got), Some(r));
        }
    }
}
