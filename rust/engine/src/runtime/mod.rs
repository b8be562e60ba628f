//! The local runtime (DESIGN.md layer 5): three parties on three threads of
//! one process, run in lockstep. Each call checks its arguments (shapes are
//! public) before any party starts, so a bad call fails without a message
//! having been sent; a failure inside a protocol aborts the neighbours at
//! once and marks the session broken.

mod factor;
mod history;
mod layout;
mod nonlinear;
mod ops;
mod workers;

pub use crate::device::DeviceKind;
pub use crate::ring::Window;

use crate::device::Device;
use crate::error::{invalid, shape_err, EngineError, Result};
use crate::net::{local_triple, Comm, OpStats, Transport};
use crate::prg;
use crate::protocol::{AShare, Party, PrgState};
use crate::ring::numel;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// The one value every hosted party computed (they must agree).
pub(super) fn agree(mut all: Vec<Vec<u64>>, msg: &str) -> Result<Vec<u64>> {
    let first = all
        .pop()
        .ok_or_else(|| EngineError::Internal("no party ran".into()))?;
    if all.iter().any(|v| *v != first) {
        return Err(EngineError::Internal(msg.into()));
    }
    Ok(first)
}

#[derive(Clone, Debug)]
pub struct Config {
    pub frac_bits: u32,
    /// Seed for reproducible keys (tests); None draws keys from the OS.
    pub seed: Option<u64>,
    pub timeout: Duration,
    pub device: DeviceKind,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            frac_bits: 16,
            seed: None,
            timeout: Duration::from_secs(60),
            device: DeviceKind::Cpu,
        }
    }
}

/// A secret-shared tensor: the shares of the parties this process hosts,
/// indexed by rank (all three in the local runtime, one in an SPMD party).
#[derive(Clone, Debug)]
pub struct Tensor {
    pub session: u64,
    pub shape: Vec<usize>,
    pub shares: Arc<[Option<AShare>; 3]>,
}

impl Tensor {
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// Party `rank`'s share; an error where this process does not host it.
    pub fn at(&self, rank: usize) -> Result<&AShare> {
        self.shares
            .get(rank)
            .and_then(|s| s.as_ref())
            .ok_or_else(|| {
                EngineError::Invalid(format!(
                    "party {rank}'s share is not held by this process (a tensor or an \
                     encrypted model made by another party: in spmd.run each party \
                     builds and encrypts its own model inside the function)"
                ))
            })
    }
}

pub struct Session {
    pub id: u64,
    pub frac_bits: u32,
    /// The parties this process hosts, in rank order: all three in the local
    /// runtime, one in an SPMD party.
    parties: Vec<Mutex<Party>>,
    ranks: Vec<usize>,
    /// Each hosted party's device, by rank: the message-free ops the runtime
    /// applies to a share (views, im2col/col2im) run where the share lives.
    devs: [Option<Arc<dyn Device>>; 3],
    broken: AtomicBool,
    /// Threads for parties 1 and 2 of the local runtime (party 0 runs on
    /// the calling thread); None with one hosted party.
    workers: Option<workers::Workers>,
    /// Held for the whole of a communicating call: two calls from two
    /// caller threads must not interleave their parties (party 0 of one
    /// call would exchange messages with party 1 of the other).
    op_lock: Mutex<()>,
    /// The history digest of every operation run so far (history.rs),
    /// carried by the step tag of every message.
    history: AtomicU64,
}

fn lock(m: &Mutex<Party>) -> Result<std::sync::MutexGuard<'_, Party>> {
    m.lock()
        .map_err(|_| EngineError::Internal("party state poisoned by an earlier panic".into()))
}

impl Session {
    pub fn new(cfg: Config) -> Result<Session> {
        let transports: Vec<Box<dyn Transport>> = local_triple(cfg.timeout)
            .into_iter()
            .map(|t| Box::new(t) as Box<dyn Transport>)
            .collect();
        let parties = Self::setup_parties(&cfg, transports, &[0, 1, 2])?;
        Self::from_parties(&cfg, parties, vec![0, 1, 2])
    }

    /// Three single-party sessions connected by in-process channels: the SPMD
    /// runtime with each party driven by its own thread (tests of SPMD code,
    /// and the reference for transports between processes).
    pub fn spmd_local(cfg: Config) -> Result<Vec<Session>> {
        let transports: Vec<Box<dyn Transport>> = local_triple(cfg.timeout)
            .into_iter()
            .map(|t| Box::new(t) as Box<dyn Transport>)
            .collect();
        let parties = Self::setup_parties(&cfg, transports, &[0, 1, 2])?;
        let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        parties
            .into_iter()
            .enumerate()
            .map(|(r, p)| {
                let mut s = Self::from_parties(&cfg, vec![p], vec![r])?;
                s.id = id; // the same session on every party
                Ok(s)
            })
            .collect()
    }

    /// One party of an SPMD session over the given transport (to its next
    /// and previous party); the key exchange runs here.
    pub fn single(cfg: Config, rank: usize, transport: Box<dyn Transport>) -> Result<Session> {
        if rank > 2 {
            return invalid(format!("rank must be 0, 1 or 2, got {rank}"));
        }
        let parties = Self::setup_parties(&cfg, vec![transport], &[rank])?;
        Self::from_parties(&cfg, parties, vec![rank])
    }

    fn setup_parties(
        cfg: &Config,
        transports: Vec<Box<dyn Transport>>,
        ranks: &[usize],
    ) -> Result<Vec<Party>> {
        if cfg.frac_bits == 0 || cfg.frac_bits > 30 {
            return invalid(format!(
                "precision_bits must be in 1..=30, got {}",
                cfg.frac_bits
            ));
        }
        let fb = cfg.frac_bits;
        let devs = ranks
            .iter()
            .map(|&r| crate::device::open(cfg.device, r))
            .collect::<Result<Vec<_>>>()?;
        let keys = ranks
            .iter()
            .map(|&i| match cfg.seed {
                Some(seed) => Ok(prg::seeded_key(seed, i)),
                None => prg::os_key(),
            })
            .collect::<Result<Vec<_>>>()?;
        std::thread::scope(|s| {
            let hs: Vec<_> = transports
                .into_iter()
                .zip(ranks)
                .zip(devs.into_iter().zip(keys))
                .map(|((t, &i), (dev, key))| {
                    s.spawn(move || Party::setup(i, Comm::new(t, i), key, dev, fb))
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join().map_err(|_| {
                        EngineError::Internal("party thread panicked in setup".into())
                    })?
                })
                .collect::<Result<Vec<_>>>()
        })
    }

    fn from_parties(cfg: &Config, parties: Vec<Party>, ranks: Vec<usize>) -> Result<Session> {
        let mut devs: [Option<Arc<dyn Device>>; 3] = [None, None, None];
        for (p, &r) in parties.iter().zip(&ranks) {
            devs[r] = Some(p.dev.clone());
        }
        Ok(Session {
            id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
            frac_bits: cfg.frac_bits,
            devs,
            workers: (parties.len() > 1)
                .then(|| workers::Workers::new(parties.len() - 1))
                .flatten(),
            parties: parties.into_iter().map(Mutex::new).collect(),
            ranks,
            broken: AtomicBool::new(false),
            op_lock: Mutex::new(()),
            history: AtomicU64::new(0),
        })
    }

    /// End the session: each hosted party closes its links (the ZeroMQ
    /// transport says BYE to its neighbours so no last message is lost).
    /// Operations afterwards fail with a peer error. Err when a neighbour
    /// failed the session after this one's last operation (it aborted):
    /// this party finished, but the job did not succeed. A session that
    /// failed itself already raised its error and closes quietly.
    pub fn close(&self) -> Result<()> {
        let mut first = None;
        for m in &self.parties {
            if let Ok(mut p) = m.lock() {
                if let Err(e) = p.comm.close() {
                    first.get_or_insert(e);
                }
            }
        }
        match first {
            Some(e) if !self.broken.swap(true, Ordering::AcqRel) => Err(e),
            _ => Ok(()),
        }
    }

    /// Abandon the session: every hosted party tells its neighbours it
    /// failed (`why`; `ended`: it left, its program done, see
    /// `Comm::leave`), and later operations fail with a peer error.
    pub fn abort(&self, why: &str, ended: bool) {
        self.broken.store(true, Ordering::Release);
        for m in &self.parties {
            if let Ok(mut p) = m.try_lock() {
                if ended {
                    p.comm.leave(why);
                } else {
                    p.comm.abort(why);
                }
            }
        }
    }

    /// The ranks this process hosts.
    pub fn ranks(&self) -> &[usize] {
        &self.ranks
    }

    /// Run `f` on every hosted party in lockstep (one thread each when
    /// there are several), labelled `op` in the counters; results in rank
    /// order of the hosted parties.
    #[track_caller]
    pub fn run<T: Send>(
        &self,
        op: &str,
        f: impl Fn(&mut Party) -> Result<T> + Sync,
    ) -> Result<Vec<T>> {
        if self.broken.load(Ordering::Acquire) {
            return Err(EngineError::Peer(
                "this session failed earlier and its parties are out of step; call init() again"
                    .into(),
            ));
        }
        // A panic never unwinds past this frame (every party's job catches
        // its own), so a poisoned lock only means an earlier failed call.
        let _one_at_a_time = self.op_lock.lock().unwrap_or_else(|e| e.into_inner());
        let f = &f;
        let site = std::panic::Location::caller();
        let history = self.history();
        // In the local runtime the three parties run the same code on the
        // same sizes, so an allocation refused before the first round is
        // refused to all three alike: they stay in step, nobody is told to
        // abort, and the session stays usable (out-of-memory from a bad
        // size is a MemoryError, not the end of the session). A party of a
        // multi-process session cannot know that and always aborts.
        let local = self.parties.len() == 3;
        // (result, whether the error left this party in step: an
        // out-of-memory before its first round, in the local runtime).
        let one = |m: &Mutex<Party>| -> (Result<T>, bool) {
            let mut p = match lock(m) {
                Ok(p) => p,
                Err(e) => return (Err(e), false),
            };
            p.comm.begin_op_at(op, site);
            p.comm.set_history(history);
            let before = p.comm.rounds_total();
            let r = f(&mut p);
            let in_step = local
                && p.comm.rounds_total() == before
                && matches!(r, Err(EngineError::OutOfMemory(_)));
            if let Err(e) = &r {
                if !in_step {
                    p.comm.abort(&e.reason());
                }
            }
            (r, in_step)
        };
        // A party whose code panicked: an internal error, out of step.
        let panicked = || -> (Result<T>, bool) {
            let e = EngineError::Internal(format!("a party panicked in {op}"));
            (Err(e), false)
        };
        let res: Vec<(Result<T>, bool)> = if self.parties.len() == 1 {
            vec![catch_unwind(AssertUnwindSafe(|| one(&self.parties[0])))
                .unwrap_or_else(|_| panicked())]
        } else if let Some(w) = self.workers.as_ref().filter(|w| w.alive_here()) {
            let job = |m| -> workers::Borrowed<'_, (Result<T>, bool)> { Box::new(move || one(m)) };
            let others = self.parties[1..].iter().map(job).collect();
            w.run_all(job(&self.parties[0]), others)
                .into_iter()
                .map(|r| r.unwrap_or_else(|_| panicked()))
                .collect()
        } else {
            std::thread::scope(|s| {
                let hs: Vec<_> = self
                    .parties
                    .iter()
                    .map(|m| s.spawn(move || one(m)))
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| panicked()))
                    .collect()
            })
        };
        // Every party refused the same allocation before communicating: the
        // parties are still in step and the session stays usable.
        let all_in_step = res.iter().all(|(_, in_step)| *in_step);
        let mut out = Vec::with_capacity(res.len());
        let mut first_err = None;
        for (r, _) in res {
            match r {
                Ok(v) => out.push(v),
                Err(e) => {
                    // Prefer the root cause over the neighbours' "aborted".
                    let root = !matches!(e, EngineError::Peer(_));
                    if first_err.is_none() || root {
                        first_err = Some(e);
                    }
                }
            }
        }
        if let Some(e) = first_err {
            if !all_in_step {
                self.broken.store(true, Ordering::Release);
            }
            return Err(e);
        }
        Ok(out)
    }

    fn check(&self, t: &Tensor) -> Result<()> {
        if t.session != self.id {
            return invalid(
                "tensor belongs to another session (created before the last init(), or inside a \
                 run_multiprocess function, whose sessions end with it)",
            );
        }
        Ok(())
    }

    /// Shares in hosted-rank order into a tensor.
    fn wrap(&self, shape: Vec<usize>, shares: Vec<AShare>) -> Tensor {
        let mut slots: [Option<AShare>; 3] = [None, None, None];
        for (r, s) in self.ranks.iter().zip(shares) {
            slots[*r] = Some(s);
        }
        Tensor {
            session: self.id,
            shape,
            shares: Arc::new(slots),
        }
    }

    /// Per-party counters, by operation label.
    pub fn stats(&self) -> Result<Vec<BTreeMap<String, OpStats>>> {
        self.parties
            .iter()
            .map(|m| Ok(lock(m)?.comm.stats().clone()))
            .collect()
    }

    /// Per hosted party, (rounds, bytes sent) since the session started
    /// (never reset): the cheap counters per-layer statistics difference.
    pub fn comm_totals(&self) -> Result<Vec<(u64, u64)>> {
        self.parties
            .iter()
            .map(|m| Ok(lock(m)?.comm.totals()))
            .collect()
    }

    /// Choose the truncation protocol of the hosted parties: exact (no wrap
    /// failures, more bytes) or ABY3's probabilistic one. In a
    /// multi-process session every party must make the same choice before
    /// the same operation, as every party runs the same script.
    pub fn set_exact_truncation(&self, exact: bool) -> Result<()> {
        for m in &self.parties {
            lock(m)?.exact_trunc = exact;
        }
        Ok(())
    }

    /// The PRG streams of the hosted parties, by rank (checkpoints).
    pub fn prg_states(&self) -> Result<Vec<(usize, PrgState)>> {
        self.parties
            .iter()
            .zip(&self.ranks)
            .map(|(m, &r)| Ok((r, lock(m)?.prg_state())))
            .collect()
    }

    /// Restore the PRG streams of the hosted parties (one state per hosted
    /// rank), then check with the neighbours that every pair of parties
    /// sharing a key is at the same position (two rounds). On a mismatch the
    /// streams are put back as they were and the session stays usable.
    pub fn restore_prg_states(&self, states: &[(usize, PrgState)]) -> Result<()> {
        let mut wanted = Vec::with_capacity(self.ranks.len());
        for &r in &self.ranks {
            match states.iter().find(|(s, _)| *s == r) {
                Some((_, st)) => wanted.push(*st),
                None => return invalid(format!("no randomness state for party {r}")),
            }
        }
        let before = self.prg_states()?;
        for (m, st) in self.parties.iter().zip(&wanted) {
            lock(m)?.restore_prg(st);
        }
        self.note(history::Note::op("restore_prg_states"));
        let checked = self.run("check_streams", |p| p.check_streams())?;
        if checked.iter().any(|ok| !ok) {
            for (m, (_, st)) in self.parties.iter().zip(&before) {
                lock(m)?.restore_prg(st);
            }
            return invalid(
                "the parties' randomness states do not match: the checkpoint files come \
                 from different runs or different save points (nothing was restored)",
            );
        }
        Ok(())
    }

    /// Check with the neighbours that each replicated component of `ts` is
    /// the same at both parties holding it (two rounds): a checkpoint file
    /// damaged or swapped for another object's is refused here, not found
    /// as garbage after the next product.
    pub fn check_replicas(&self, ts: &[&Tensor]) -> Result<()> {
        for t in ts {
            self.check(t)?;
        }
        let note = ts
            .iter()
            .fold(history::Note::op("check_replicas"), |n, t| n.dims(&t.shape));
        self.note(note);
        let checked = self.run("check_replicas", |p| {
            let shares = ts
                .iter()
                .map(|t| t.at(p.rank))
                .collect::<Result<Vec<_>>>()?;
            p.check_replicas(&shares)
        })?;
        if checked.iter().any(|ok| !ok) {
            return invalid(
                "the parties' copies of a shared value differ: a checkpoint file was \
                 damaged, or files of different objects or runs were mixed",
            );
        }
        Ok(())
    }

    /// A tensor from the hosted parties' components (one (a, b) pair per
    /// hosted rank, in rank order), each `numel(shape)` ring words: the
    /// inverse of `party_share`, for checkpoints.
    pub fn tensor_from_shares(
        &self,
        shape: Vec<usize>,
        comps: Vec<(Vec<u64>, Vec<u64>)>,
    ) -> Result<Tensor> {
        let n = numel(&shape);
        if comps.len() != self.ranks.len() {
            return invalid(format!(
                "{} share pairs for the {} parties this process hosts",
                comps.len(),
                self.ranks.len()
            ));
        }
        self.note(history::Note::op("tensor_from_shares").dims(&shape));
        let mut shares = Vec::with_capacity(comps.len());
        for (&r, (a, b)) in self.ranks.iter().zip(comps) {
            if a.len() != n || b.len() != n {
                return shape_err(format!(
                    "party {r}'s share has {} and {} words for shape {shape:?} ({n} elements)",
                    a.len(),
                    b.len()
                ));
            }
            let dev = self.dev(r)?;
            shares.push(AShare {
                a: dev.upload(a)?,
                b: dev.upload(b)?,
            });
        }
        Ok(self.wrap(shape, shares))
    }

    pub fn exact_truncation(&self) -> Result<bool> {
        match self.parties.first() {
            Some(m) => Ok(lock(m)?.exact_trunc),
            None => Ok(false),
        }
    }

    pub fn reset_stats(&self) -> Result<()> {
        for m in &self.parties {
            lock(m)?.comm.reset_stats();
        }
        Ok(())
    }

    // ---------------------------------------------------------- local ops

    fn same_shape(&self, x: &Tensor, y: &Tensor, op: &str) -> Result<()> {
        self.check(x)?;
        self.check(y)?;
        if x.shape != y.shape {
            return shape_err(format!(
                "{op}: shapes {:?} and {:?} differ (broadcast first)",
                x.shape, y.shape
            ));
        }
        Ok(())
    }

    /// Party `rank`'s device (a rank this process hosts).
    fn dev(&self, rank: usize) -> Result<&dyn Device> {
        match self.devs.get(rank) {
            Some(Some(d)) => Ok(&**d),
            _ => Err(EngineError::Invalid(format!(
                "party {rank} is not hosted by this process"
            ))),
        }
    }

    /// A local (message-free) op on every hosted share of `x`.
    fn local(
        &self,
        x: &Tensor,
        shape: Vec<usize>,
        f: impl Fn(&dyn Device, usize, &AShare) -> Result<AShare>,
    ) -> Result<Tensor> {
        let mut shares: [Option<AShare>; 3] = [None, None, None];
        for (r, slot) in shares.iter_mut().enumerate() {
            if let Some(s) = &x.shares[r] {
                *slot = Some(f(self.dev(r)?, r, s)?);
            }
        }
        Ok(Tensor {
            session: self.id,
            shape,
            shares: Arc::new(shares),
        })
    }

    /// A local op of two tensors of one session (so they hold the same ranks).
    fn local2(
        &self,
        x: &Tensor,
        y: &Tensor,
        f: impl Fn(&dyn Device, &AShare, &AShare) -> Result<AShare>,
    ) -> Result<Tensor> {
        let mut shares: [Option<AShare>; 3] = [None, None, None];
        for (r, slot) in shares.iter_mut().enumerate() {
            if let (Some(a), Some(b)) = (&x.shares[r], &y.shares[r]) {
                *slot = Some(f(self.dev(r)?, a, b)?);
            }
        }
        Ok(Tensor {
            session: self.id,
            shape: x.shape.clone(),
            shares: Arc::new(shares),
        })
    }

    /// A public operand has one value per element, or one for all.
    fn public_len<T>(&self, x: &Tensor, p: &[T]) -> Result<()> {
        if p.len() != x.numel() && p.len() != 1 {
            return shape_err(format!(
                "public operand has {} values for shape {:?}",
                p.len(),
                x.shape
            ));
        }
        Ok(())
    }
}
