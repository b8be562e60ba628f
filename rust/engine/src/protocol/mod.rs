//! The three-party protocols (DESIGN.md layer 4): replicated sharing over
//! Z_2^64 as in ABY3 (Mohassel & Rindal 2018, section 3 and 5.1). Every
//! function runs on one party, on that party's shares; the runtime runs the
//! three parties in lockstep. No function here knows which device or which
//! transport it runs on.
//!
//! Party i holds the pair (x_i, x_{i+1}) of x = x_0 + x_1 + x_2 and the PRG
//! keys (k_i, k_{i+1}); key k_j is therefore held by parties j and j-1.
//!
//! Costs per element (rounds / ring elements sent by each party), asserted by
//! the tests against this table:
//!
//! | protocol          | rounds | sent per party                          |
//! |-------------------|--------|-----------------------------------------|
//! | share (from src)  | 1      | src: 1 to each of the two others; others 0 |
//! | reveal (to all)   | 1      | 1                                       |
//! | reveal (to one)   | 1      | the target's previous party: 1; others 0 |
//! | mul/matmul/conv   | 2      | 1 (output size), truncation fused in    |
//! | mul by integer    | 0      | 0                                       |
//! | truncate / divide | 2      | 1                                       |
//! | exact truncation  | 2      | P0: 3; P1: 2; P2: 2 after a product, 1 otherwise |
//!
//! The exact truncation (`trunc`, `Party::exact_trunc`) replaces the fused
//! truncation of mul/matmul/conv as well: those then cost what it costs.
//!
//! A share from an owner cannot cost one element in total: both other
//! parties hold the one component that depends on the secret, so the owner
//! sends it to each of them (DESIGN.md's "1 / 1 (owner)" is per link).

mod arith;
pub mod binary;
mod conv;
pub use conv::ConvWeight;
pub mod local;
mod nonlinear;
mod trunc;

use crate::device::{Buf, Device, Op2};
use crate::error::Result;
use crate::net::{Comm, Peer};
use crate::prg::Prg;
use std::sync::Arc;

/// One party's replicated share of a tensor: `a` = x_i, `b` = x_{i+1}, both
/// buffers of the party's device.
#[derive(Clone, Debug, Default)]
pub struct AShare {
    pub a: Buf,
    pub b: Buf,
}

impl AShare {
    pub fn len(&self) -> usize {
        self.a.len()
    }
    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }
    /// Apply a local (linear, message-free) map to both components.
    pub fn map(&self, f: impl Fn(&Buf) -> Result<Buf>) -> Result<AShare> {
        Ok(AShare {
            a: f(&self.a)?,
            b: f(&self.b)?,
        })
    }
}

/// A party's two PRG streams as (key, block counter): under k_i (shared
/// with the previous party) and under k_{i+1} (shared with the next).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrgState {
    pub own: ([u8; 16], u128),
    pub next: ([u8; 16], u128),
}

/// A party's context: rank, transport with counters, PRG keys, device.
pub struct Party {
    pub rank: usize,
    pub comm: Comm,
    /// PRG under k_i (shared with the previous party).
    own: Prg,
    /// PRG under k_{i+1} (shared with the next party).
    next: Prg,
    pub dev: Arc<dyn Device>,
    pub frac_bits: u32,
    /// Truncations (and public divisions) by the exact protocol of `trunc`
    /// instead of ABY3's probabilistic one. Every party must agree.
    pub exact_trunc: bool,
}

impl Party {
    /// Key set-up (DESIGN.md "Correlated randomness"): party i sends its key
    /// k_i to party i-1 and receives k_{i+1} from party i+1. One round.
    pub fn setup(
        rank: usize,
        mut comm: Comm,
        key: [u8; 16],
        dev: Arc<dyn Device>,
        frac_bits: u32,
    ) -> Result<Party> {
        comm.begin_op("setup");
        let words = vec![
            u64::from_le_bytes([
                key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
            ]),
            u64::from_le_bytes([
                key[8], key[9], key[10], key[11], key[12], key[13], key[14], key[15],
            ]),
        ];
        let got = comm.round(vec![(Peer::Prev, Buf::Host(words))], &[Peer::Next])?;
        let got: Vec<u64> = got
            .into_iter()
            .next()
            .map(Buf::into_vec)
            .transpose()?
            .unwrap_or_default();
        let mut k_next = [0u8; 16];
        if got.len() != 2 {
            return Err(crate::EngineError::Peer(
                "malformed key from next party".into(),
            ));
        }
        k_next[..8].copy_from_slice(&got[0].to_le_bytes());
        k_next[8..].copy_from_slice(&got[1].to_le_bytes());
        Ok(Party {
            rank,
            comm,
            own: Prg::new(key),
            next: Prg::new(k_next),
            dev,
            frac_bits,
            exact_trunc: false,
        })
    }

    /// One communication round on device buffers: what is received is
    /// adopted by this party's device, and each message must hold exactly
    /// the given number of elements.
    pub(crate) fn round(
        &mut self,
        sends: Vec<(Peer, Buf)>,
        recvs: &[(Peer, usize)],
    ) -> Result<Vec<Buf>> {
        let peers: Vec<Peer> = recvs.iter().map(|r| r.0).collect();
        let got = self.comm.round(sends, &peers)?;
        got.into_iter()
            .zip(recvs)
            .map(|(b, &(_, n))| {
                if b.len() != n {
                    return Err(crate::EngineError::Peer(format!(
                        "message of {} elements where {n} were expected",
                        b.len()
                    )));
                }
                self.dev.adopt(b)
            })
            .collect()
    }

    /// A round that receives one message of n elements.
    pub(crate) fn round1(&mut self, sends: Vec<(Peer, Buf)>, from: Peer, n: usize) -> Result<Buf> {
        let mut v = self.round(sends, &[(from, n)])?;
        v.pop()
            .ok_or_else(|| crate::EngineError::Internal("no message".into()))
    }

    /// Fresh words from the PRG under k_i / k_{i+1}, on the device.
    pub(crate) fn rand_own(&mut self, n: usize) -> Result<Buf> {
        self.dev.prg(&mut self.own, n)
    }

    pub(crate) fn rand_next(&mut self, n: usize) -> Result<Buf> {
        self.dev.prg(&mut self.next, n)
    }

    /// The reshare of a 3-out-of-3 sharing into a replicated one, no
    /// truncation: send z_i to the previous party. One round, one element.
    pub fn reshare(&mut self, z: Buf) -> Result<AShare> {
        let n = z.len();
        let b = self.round1(vec![(Peer::Prev, z.clone())], Peer::Next, n)?;
        Ok(AShare { a: z, b })
    }

    pub fn scale(&self) -> u64 {
        1u64 << self.frac_bits
    }

    /// This party's PRG streams (key and block counter under k_i, then
    /// under k_{i+1}): what a checkpoint stores to resume bit for bit.
    pub fn prg_state(&self) -> PrgState {
        PrgState {
            own: (self.own.key(), self.own.counter()),
            next: (self.next.key(), self.next.counter()),
        }
    }

    /// Put the PRG streams back where a checkpoint left them.
    pub fn restore_prg(&mut self, st: &PrgState) {
        self.own = Prg::at(st.own.0, st.own.1);
        self.next = Prg::at(st.next.0, st.next.1);
    }

    /// Whether every party's stream under k_{i+1} is the next party's stream
    /// under its own key, at the same position (after restoring PRG states
    /// from checkpoint files). Round 1: each party sends a fingerprint of
    /// (k_i, counter) to the previous party, which holds both already, so
    /// the message tells it nothing new; the fingerprint is two words of the
    /// stream at block 2^127 + counter, a position no draw reaches. Round 2:
    /// each party tells both neighbours whether its check passed, so all
    /// three return the same answer. Two rounds, 2 + 2 words per party.
    pub fn check_streams(&mut self) -> Result<bool> {
        let print = |key: [u8; 16], ctr: u128| Prg::at(key, (1u128 << 127) | ctr).gen(2);
        let mine = print(self.own.key(), self.own.counter());
        let want = print(self.next.key(), self.next.counter());
        self.agree_with_next(mine, want)
    }

    /// Whether every party holds the same copy of each replicated
    /// component of `shares` as its neighbour (party i's `b` is party
    /// i+1's `a`): checkpoints read back from files, where a damaged or
    /// swapped file would otherwise give garbage after the next product.
    /// Compares two fingerprints per party (two rounds, 16 bytes and a
    /// verdict each way): sums of the words times public odd coefficients,
    /// so one changed word always changes both. A check against accidents,
    /// not against a party that lies (the threat model's parties follow
    /// the protocol).
    pub fn check_replicas(&mut self, shares: &[&AShare]) -> Result<bool> {
        let mut mine = [0u64; 2];
        let mut want = [0u64; 2];
        let mut coeffs = Prg::at(*b"cryptgpu-replica", 0);
        // coefficients drawn a chunk at a time: 16 bytes per element of
        // the tensor in hand, not of the whole checkpoint
        const CHUNK: usize = 1 << 16;
        for s in shares {
            let (a, b) = (s.a.to_vec()?, s.b.to_vec()?);
            for (xs, ys) in a.chunks(CHUNK).zip(b.chunks(CHUNK)) {
                let c = coeffs.gen(2 * xs.len());
                for (i, (x, y)) in xs.iter().zip(ys).enumerate() {
                    for (lane, k) in c[2 * i..2 * i + 2].iter().enumerate() {
                        mine[lane] = mine[lane].wrapping_add((k | 1).wrapping_mul(*x));
                        want[lane] = want[lane].wrapping_add((k | 1).wrapping_mul(*y));
                    }
                }
            }
        }
        self.agree_with_next(mine.to_vec(), want.to_vec())
    }

    /// Send `mine` to the previous party, compare what the next one sends
    /// with `want`, and share the verdicts both ways: true where all three
    /// parties' comparisons held.
    fn agree_with_next(&mut self, mine: Vec<u64>, want: Vec<u64>) -> Result<bool> {
        let n = mine.len();
        let got = self.round1(vec![(Peer::Prev, Buf::Host(mine))], Peer::Next, n)?;
        let ok = u64::from(got.into_vec()? == want);
        let verdicts = self.round(
            vec![
                (Peer::Next, Buf::Host(vec![ok])),
                (Peer::Prev, Buf::Host(vec![ok])),
            ],
            &[(Peer::Next, 1), (Peer::Prev, 1)],
        )?;
        let mut all = ok == 1;
        for v in verdicts {
            all &= v.into_vec()? == [1];
        }
        Ok(all)
    }

    /// A 3-out-of-3 sharing of zero: F(k_i) - F(k_{i+1}); no messages.
    pub fn zero_share(&mut self, n: usize) -> Result<Buf> {
        let mut z = self.rand_own(n)?;
        let r = self.rand_next(n)?;
        self.dev.map2_into(Op2::Sub, &mut z, &r)?;
        Ok(z)
    }
}
