//! The local runtime (DESIGN.md layer 5): three parties on three threads of
//! one process, run in lockstep. Each call checks its arguments (shapes are
//! public) before any party starts, so a bad call fails without a message
//! having been sent; a failure inside a protocol aborts the neighbours at
//! once and marks the session broken.

use crate::device::{Buf, Conv2dGeom, Cpu, Device};
use crate::error::{invalid, shape_err, EngineError, Result};
use crate::net::{local_triple, Comm, OpStats, Transport};
use crate::prg;
use crate::protocol::{local, AShare, Party};
use crate::ring::{self, numel};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// The one value every hosted party computed (they must agree).
fn agree(mut all: Vec<Vec<u64>>, msg: &str) -> Result<Vec<u64>> {
    let first = all
        .pop()
        .ok_or_else(|| EngineError::Internal("no party ran".into()))?;
    if all.iter().any(|v| *v != first) {
        return Err(EngineError::Internal(msg.into()));
    }
    Ok(first)
}

/// A view (shape, offset, strides) lies inside a tensor of n elements.
fn view_fits(shape: &[usize], offset: usize, st: &[usize], n: usize) -> Result<()> {
    if st.len() != shape.len() {
        return shape_err("a view needs one stride per dim");
    }
    if numel(shape) > 0 {
        let last = offset
            + shape
                .iter()
                .zip(st)
                .map(|(s, t)| (s - 1) * t)
                .sum::<usize>();
        if last >= n {
            return shape_err(format!("view reaches element {last} of a tensor of {n}"));
        }
    }
    Ok(())
}

/// Where the parties' shares are computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceKind {
    #[default]
    Cpu,
    /// NVIDIA GPUs, placed by `cuda::device_map` (party i on GPU i with
    /// three or more, all on GPU 0 otherwise).
    Cuda,
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

/// A sliding window over NCHW data (pooling, im2col): PyTorch's kernel,
/// stride, padding and dilation, each (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
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
                EngineError::Invalid(format!("party {rank}'s share is not held by this process"))
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
}

/// The device party `rank` computes on. The only place the runtime names
/// one.
fn make_device(kind: DeviceKind, rank: usize) -> Result<Arc<dyn Device>> {
    match kind {
        DeviceKind::Cpu => Ok(Arc::new(Cpu)),
        DeviceKind::Cuda => {
            let map = crate::cuda::device_map(crate::cuda::device_count()).ok_or_else(|| {
                EngineError::Unavailable(
                    "device cuda needs an NVIDIA GPU and its driver (libcuda); none was found"
                        .into(),
                )
            })?;
            Ok(Arc::new(crate::cuda::Cuda::new(map[rank])?))
        }
    }
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
            .map(|&r| make_device(cfg.device, r))
            .collect::<Result<Vec<_>>>()?;
        std::thread::scope(|s| {
            let hs: Vec<_> = transports
                .into_iter()
                .zip(ranks)
                .zip(devs)
                .map(|((t, &i), dev)| {
                    let key = match cfg.seed {
                        Some(seed) => prg::seeded_key(seed, i),
                        None => prg::os_key(),
                    };
                    s.spawn(move || Party::setup(i, Comm::new(i, t), key, dev, fb))
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
            parties: parties.into_iter().map(Mutex::new).collect(),
            ranks,
            broken: AtomicBool::new(false),
        })
    }

    /// End the session: each hosted party closes its links (the ZeroMQ
    /// transport says BYE to its neighbours so no last message is lost).
    /// Operations afterwards fail with a peer error.
    pub fn close(&self) {
        for m in &self.parties {
            if let Ok(mut p) = m.lock() {
                p.comm.close();
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
        let f = &f;
        let one = |m: &Mutex<Party>| -> Result<T> {
            let mut p = lock(m)?;
            p.comm.begin_op(op);
            let r = f(&mut p);
            if let Err(e) = &r {
                p.comm.abort(&e.to_string());
            }
            r
        };
        let res: Vec<Result<T>> = if self.parties.len() == 1 {
            vec![
                catch_unwind(AssertUnwindSafe(|| one(&self.parties[0]))).unwrap_or_else(|_| {
                    Err(EngineError::Internal(format!("the party panicked in {op}")))
                }),
            ]
        } else {
            std::thread::scope(|s| {
                let hs: Vec<_> = self
                    .parties
                    .iter()
                    .map(|m| s.spawn(move || one(m)))
                    .collect();
                hs.into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(EngineError::Internal(format!("a party panicked in {op}")))
                        })
                    })
                    .collect()
            })
        };
        let mut out = Vec::with_capacity(res.len());
        let mut first_err = None;
        for r in res {
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
            self.broken.store(true, Ordering::Release);
            return Err(e);
        }
        Ok(out)
    }

    fn check(&self, t: &Tensor) -> Result<()> {
        if t.session != self.id {
            return invalid("tensor belongs to another session (created before the last init())");
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

    pub fn reset_stats(&self) -> Result<()> {
        for m in &self.parties {
            lock(m)?.comm.reset_stats();
        }
        Ok(())
    }

    // ---------------------------------------------------------------- I/O

    /// Encode fixed-point values and share them from party `src`.
    pub fn share_f64(&self, values: &[f64], shape: Vec<usize>, src: usize) -> Result<Tensor> {
        let enc = ring::encode(values, self.frac_bits)?;
        self.share_ring(enc, shape, src)
    }

    pub fn share_ring(&self, values: Vec<u64>, shape: Vec<usize>, src: usize) -> Result<Tensor> {
        if src > 2 {
            return invalid(format!("src must be 0, 1 or 2, got {src}"));
        }
        if values.len() != numel(&shape) {
            return shape_err(format!("{} values for shape {shape:?}", values.len()));
        }
        let n = values.len();
        let vals = &values;
        let r = self.run("share", |p| {
            p.share(src, if p.rank == src { Some(vals) } else { None }, n)
        })?;
        Ok(self.wrap(shape, r))
    }

    /// Reveal to all parties; returns the ring values (all three agree).
    pub fn reveal_ring(&self, t: &Tensor) -> Result<Vec<u64>> {
        self.check(t)?;
        let all = self.run("reveal", |p| p.reveal(t.at(p.rank)?))?;
        agree(all, "parties revealed different values")
    }

    pub fn reveal_f64(&self, t: &Tensor) -> Result<Vec<f64>> {
        Ok(ring::decode(&self.reveal_ring(t)?, self.frac_bits))
    }

    /// Reveal to party `to` only; returns what that party decodes.
    /// Reveal to party `to` only: Some(values) where this process hosts it.
    pub fn reveal_to_f64(&self, t: &Tensor, to: usize) -> Result<Option<Vec<f64>>> {
        self.check(t)?;
        if to > 2 {
            return invalid(format!("dst must be 0, 1 or 2, got {to}"));
        }
        let r = self.run("reveal", |p| p.reveal_to(t.at(p.rank)?, to))?;
        match r.into_iter().flatten().next() {
            Some(x) => Ok(Some(ring::decode(&x, self.frac_bits))),
            // This process does not host the target party.
            None if !self.ranks.contains(&to) => Ok(None),
            None => Err(EngineError::Internal("target party got nothing".into())),
        }
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
    fn dev(&self, rank: usize) -> &dyn Device {
        match &self.devs[rank] {
            Some(d) => &**d,
            None => &Cpu,
        }
    }

    fn local(
        &self,
        x: &Tensor,
        shape: Vec<usize>,
        f: impl Fn(&dyn Device, usize, &AShare) -> AShare,
    ) -> Tensor {
        let shares = [0, 1, 2].map(|r| x.shares[r].as_ref().map(|s| f(self.dev(r), r, s)));
        Tensor {
            session: self.id,
            shape,
            shares: Arc::new(shares),
        }
    }

    /// A local op of two tensors of one session (so they hold the same ranks).
    fn local2(
        &self,
        x: &Tensor,
        y: &Tensor,
        f: impl Fn(&dyn Device, &AShare, &AShare) -> AShare,
    ) -> Tensor {
        let shares = [0, 1, 2].map(|r| match (&x.shares[r], &y.shares[r]) {
            (Some(a), Some(b)) => Some(f(self.dev(r), a, b)),
            _ => None,
        });
        Tensor {
            session: self.id,
            shape: x.shape.clone(),
            shares: Arc::new(shares),
        }
    }

    pub fn add(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        self.same_shape(x, y, "add")?;
        Ok(self.local2(x, y, local::add))
    }

    pub fn sub(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        self.same_shape(x, y, "sub")?;
        Ok(self.local2(x, y, local::sub))
    }

    pub fn neg(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x)?;
        Ok(self.local(x, x.shape.clone(), |d, _, s| local::neg(d, s)))
    }

    fn public_len(&self, x: &Tensor, p: &[f64]) -> Result<()> {
        if p.len() != x.numel() {
            return shape_err(format!(
                "public operand has {} values for shape {:?}",
                p.len(),
                x.shape
            ));
        }
        Ok(())
    }

    /// x + p for a public fixed-point tensor p of the same shape.
    pub fn add_public(&self, x: &Tensor, p: &[f64]) -> Result<Tensor> {
        self.check(x)?;
        self.public_len(x, p)?;
        let e = ring::encode(p, self.frac_bits)?;
        Ok(self.local(x, x.shape.clone(), |d, i, s| {
            local::add_public(d, i, s, &d.upload(e.clone()))
        }))
    }

    /// x * p for public integers p (no truncation, no messages).
    pub fn mul_public_int(&self, x: &Tensor, p: &[i64]) -> Result<Tensor> {
        self.check(x)?;
        if p.len() != x.numel() {
            return shape_err(format!(
                "public operand has {} values for shape {:?}",
                p.len(),
                x.shape
            ));
        }
        let e: Vec<u64> = p.iter().map(|&v| v as u64).collect();
        Ok(self.local(x, x.shape.clone(), |d, _, s| {
            local::mul_public(d, s, &d.upload(e.clone()))
        }))
    }

    /// x * p for a public fixed-point tensor: local product, then truncation.
    pub fn mul_public(&self, x: &Tensor, p: &[f64]) -> Result<Tensor> {
        self.check(x)?;
        self.public_len(x, p)?;
        let e = ring::encode(p, self.frac_bits)?;
        let r = self.run("mul", |pt| {
            let d = pt.dev.clone();
            pt.truncate(&local::mul_public(
                &*d,
                x.at(pt.rank)?,
                &d.upload(e.clone()),
            ))
        })?;
        Ok(self.wrap(x.shape.clone(), r))
    }

    /// Division by a positive public integer (sum -> mean, pooling).
    pub fn div_public_int(&self, x: &Tensor, d: u64) -> Result<Tensor> {
        self.check(x)?;
        if d == 0 {
            return invalid("division by zero");
        }
        if d == 1 {
            return Ok(x.clone());
        }
        let r = self.run("truncate", |p| p.divide(x.at(p.rank)?, d))?;
        Ok(self.wrap(x.shape.clone(), r))
    }

    pub fn mul(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        self.same_shape(x, y, "mul")?;
        let r = self.run("mul", |p| p.mul(x.at(p.rank)?, y.at(p.rank)?))?;
        Ok(self.wrap(x.shape.clone(), r))
    }

    /// Batched matmul on [.., m, k] x [.., k, n] with equal batch dims, or
    /// plain 2-D.
    fn mm_dims(
        &self,
        xs: &[usize],
        ys: &[usize],
    ) -> Result<(usize, usize, usize, usize, Vec<usize>)> {
        if xs.len() < 2 || ys.len() < 2 || xs.len() != ys.len() {
            return shape_err(format!(
                "matmul needs two tensors of equal rank >= 2, got {xs:?} and {ys:?}"
            ));
        }
        let r = xs.len();
        if xs[..r - 2] != ys[..r - 2] {
            return shape_err(format!("matmul batch dims differ: {xs:?} and {ys:?}"));
        }
        let (m, k, k2, n) = (xs[r - 2], xs[r - 1], ys[r - 2], ys[r - 1]);
        if k != k2 {
            return shape_err(format!("matmul: inner dims differ ({xs:?} @ {ys:?})"));
        }
        let batch = numel(&xs[..r - 2]);
        let mut out = xs[..r - 2].to_vec();
        out.extend([m, n]);
        Ok((batch, m, k, n, out))
    }

    pub fn matmul(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        self.check(x)?;
        self.check(y)?;
        let (b, m, k, n, shape) = self.mm_dims(&x.shape, &y.shape)?;
        let r = self.run("matmul", |p| {
            p.matmul(x.at(p.rank)?, y.at(p.rank)?, b, m, k, n)
        })?;
        Ok(self.wrap(shape, r))
    }

    /// x @ p (or p @ x when `public_left`) for a public fixed-point p.
    pub fn matmul_public(
        &self,
        x: &Tensor,
        p: &[f64],
        pshape: &[usize],
        public_left: bool,
    ) -> Result<Tensor> {
        self.check(x)?;
        if p.len() != numel(pshape) {
            return shape_err(format!("{} values for shape {pshape:?}", p.len()));
        }
        let (b, m, k, n, shape) = if public_left {
            self.mm_dims(pshape, &x.shape)?
        } else {
            self.mm_dims(&x.shape, pshape)?
        };
        let e = ring::encode(p, self.frac_bits)?;
        let r = self.run("matmul", |pt| {
            pt.matmul_public(x.at(pt.rank)?, &e, public_left, b, m, k, n)
        })?;
        Ok(self.wrap(shape, r))
    }

    #[allow(clippy::too_many_arguments)]
    fn conv_geom(
        &self,
        xs: &[usize],
        ws: &[usize],
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<(Conv2dGeom, Vec<usize>)> {
        if xs.len() != 4 || ws.len() != 4 {
            return shape_err(format!(
                "conv2d needs a 4-D input and weight, got {xs:?} and {ws:?}"
            ));
        }
        if groups == 0 || !xs[1].is_multiple_of(groups) || !ws[0].is_multiple_of(groups) {
            return shape_err(format!(
                "conv2d: groups={groups} must divide in_channels={} and out_channels={}",
                xs[1], ws[0]
            ));
        }
        if ws[1] * groups != xs[1] {
            return shape_err(format!(
                "conv2d: weight {ws:?} expects {} input channels, input {xs:?} has {}",
                ws[1] * groups,
                xs[1]
            ));
        }
        let g = Conv2dGeom {
            n: xs[0],
            c: xs[1],
            h: xs[2],
            w: xs[3],
            kh: ws[2],
            kw: ws[3],
            stride,
            padding,
            dilation,
        };
        if !g.fits() {
            return shape_err(format!(
                "conv2d: kernel {}x{} (dilation {dilation:?}, stride {stride:?}) does not fit input {xs:?} with padding {padding:?}",
                g.kh, g.kw
            ));
        }
        let (oh, ow) = g.out_hw();
        Ok((g, vec![xs[0], ws[0], oh, ow]))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        &self,
        x: &Tensor,
        w: &Tensor,
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<Tensor> {
        self.check(x)?;
        self.check(w)?;
        let (g, shape) = self.conv_geom(&x.shape, &w.shape, stride, padding, dilation, groups)?;
        let o = w.shape[0];
        let r = self.run("conv2d", |p| {
            p.conv2d(x.at(p.rank)?, w.at(p.rank)?, &g, o, groups)
        })?;
        Ok(self.wrap(shape, r))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_public(
        &self,
        x: &Tensor,
        w: &[f64],
        wshape: &[usize],
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<Tensor> {
        self.check(x)?;
        if w.len() != numel(wshape) {
            return shape_err(format!("{} weight values for shape {wshape:?}", w.len()));
        }
        let (g, shape) = self.conv_geom(&x.shape, wshape, stride, padding, dilation, groups)?;
        let e = ring::encode(w, self.frac_bits)?;
        let o = wshape[0];
        let r = self.run("conv2d", |p| {
            p.conv2d_public(x.at(p.rank)?, &e, &g, o, groups)
        })?;
        Ok(self.wrap(shape, r))
    }

    pub fn avg_pool2d(
        &self,
        x: &Tensor,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        self.check(x)?;
        let xs = &x.shape;
        let win = Window {
            kernel,
            stride,
            padding,
            dilation: (1, 1),
        };
        let g = self.pool_geom(xs, &win)?;
        let (oh, ow) = g.out_hw();
        let r = self.run("avg_pool2d", |p| p.avg_pool2d(x.at(p.rank)?, &g))?;
        Ok(self.wrap(vec![xs[0], xs[1], oh, ow], r))
    }

    // ----------------------------------------------------- comparisons

    /// msb(x) * v: the sign bit of x (1 where x < 0) injected into v, where
    /// v has shape x.shape + extra dims (the same bit for each trailing
    /// group), or v = None for the public fixed-point 1.0 (so the result is
    /// the 0/1 indicator x < 0). 10 rounds (binary.rs table).
    pub fn msb_inject(&self, x: &Tensor, v: Option<&Tensor>, op: &str) -> Result<Tensor> {
        self.check(x)?;
        let n = x.numel();
        let (reps, shape) = match v {
            Some(v) => {
                self.check(v)?;
                if v.shape.len() < x.shape.len() || v.shape[..x.shape.len()] != x.shape[..] {
                    return shape_err(format!(
                        "msb_inject: values {:?} must start with the shape {:?}",
                        v.shape, x.shape
                    ));
                }
                (numel(&v.shape[x.shape.len()..]), v.shape.clone())
            }
            None => (1, x.shape.clone()),
        };
        let one = 1u64 << self.frac_bits;
        let r = self.run(op, |p| {
            let xs = x.at(p.rank)?;
            let c = p.msb(xs)?;
            let pubv;
            let vs = match v {
                Some(v) => v.at(p.rank)?,
                None => {
                    pubv = local::public(&*p.dev, p.rank, &vec![one; n]);
                    &pubv
                }
            };
            p.bit_inject(&c, vs, n, reps)
        })?;
        Ok(self.wrap(shape, r))
    }

    /// Full A2B, opened: the 64-bit words the binary sharing reconstructs to
    /// (for tests and inspection; 8 rounds for the conversion, 1 to open).
    pub fn a2b_reveal(&self, x: &Tensor) -> Result<Vec<u64>> {
        self.check(x)?;
        let n = x.numel();
        let all = self.run("a2b", |p| {
            let bits = p.a2b(x.at(p.rank)?)?;
            let planes = p.reveal_bits(&bits)?;
            Ok(crate::binary::from_planes(&planes, n))
        })?;
        agree(all, "parties opened different words")
    }

    /// max(x, 0) = x - msb(x) x. 10 rounds.
    pub fn relu(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x)?;
        let r = self.run("relu", |p| {
            let xs = x.at(p.rank)?;
            let c = p.msb(xs)?;
            let m = p.bit_inject(&c, xs, xs.len(), 1)?;
            Ok(local::sub(&*p.dev, xs, &m))
        })?;
        Ok(self.wrap(x.shape.clone(), r))
    }

    /// A sharing of public fixed-point values (components (p, 0, 0)); no
    /// messages.
    pub fn public_tensor(&self, values: &[f64], shape: Vec<usize>) -> Result<Tensor> {
        if values.len() != numel(&shape) {
            return shape_err(format!("{} values for shape {shape:?}", values.len()));
        }
        let e = ring::encode(values, self.frac_bits)?;
        let s = self
            .ranks
            .iter()
            .map(|&i| local::public(self.dev(i), i, &e))
            .collect();
        Ok(self.wrap(shape, s))
    }

    fn pool_geom(&self, shape: &[usize], win: &Window) -> Result<Conv2dGeom> {
        let Window {
            kernel,
            stride,
            padding,
            dilation,
        } = *win;
        if shape.len() != 4 {
            return shape_err(format!("pooling needs NCHW input, got {shape:?}"));
        }
        if padding.0 * 2 > kernel.0 || padding.1 * 2 > kernel.1 {
            return invalid(format!(
                "padding {padding:?} must be at most half the kernel {kernel:?}"
            ));
        }
        let g = Conv2dGeom {
            n: shape[0],
            c: shape[1],
            h: shape[2],
            w: shape[3],
            kh: kernel.0,
            kw: kernel.1,
            stride,
            padding,
            dilation,
        };
        if !g.fits() {
            return shape_err(format!(
                "pooling kernel {kernel:?} does not fit input {shape:?}"
            ));
        }
        Ok(g)
    }

    /// Input index of every window slot; a padded slot repeats the first
    /// in-bounds element of its window.
    fn window_index(g: &Conv2dGeom) -> Result<Vec<usize>> {
        let (oh, ow) = g.out_hw();
        let kk = g.kh * g.kw;
        let mut idx = Vec::with_capacity(g.n * g.c * oh * ow * kk);
        for p in 0..g.n * g.c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let pos = |k: usize| {
                        let (ky, kx) = (k / g.kw, k % g.kw);
                        let iy =
                            (oy * g.stride.0 + ky * g.dilation.0) as isize - g.padding.0 as isize;
                        let ix =
                            (ox * g.stride.1 + kx * g.dilation.1) as isize - g.padding.1 as isize;
                        (iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w)
                            .then(|| p * g.h * g.w + iy as usize * g.w + ix as usize)
                    };
                    let first = (0..kk).find_map(pos).ok_or_else(|| {
                        EngineError::Invalid("a pooling window lies entirely in the padding".into())
                    })?;
                    idx.extend((0..kk).map(|k| pos(k).unwrap_or(first)));
                }
            }
        }
        Ok(idx)
    }

    /// Pooling windows of an NCHW tensor: [N, C, OH, OW, kh * kw]. A padded
    /// position repeats the first in-bounds element of its window, so a max
    /// over the window ignores padding (PyTorch pads max pooling with -inf).
    pub fn pool_windows(&self, x: &Tensor, win: &Window) -> Result<Tensor> {
        self.check(x)?;
        let g = self.pool_geom(&x.shape, win)?;
        let (oh, ow) = g.out_hw();
        let idx = Self::window_index(&g)?;
        Ok(
            self.local(x, vec![g.n, g.c, oh, ow, g.kh * g.kw], |d, _, s| {
                s.map(|v| d.index_gather(v, &idx))
            }),
        )
    }

    /// The adjoint of `pool_windows`: scatter-add window values back to the
    /// input positions they were taken from (max-pool backward).
    pub fn pool_scatter(&self, w: &Tensor, input_shape: &[usize], win: &Window) -> Result<Tensor> {
        self.check(w)?;
        let g = self.pool_geom(input_shape, win)?;
        let (oh, ow) = g.out_hw();
        if w.shape != [g.n, g.c, oh, ow, g.kh * g.kw] {
            return shape_err(format!(
                "pool_scatter: windows {:?} do not match input {input_shape:?}",
                w.shape
            ));
        }
        let idx = Self::window_index(&g)?;
        let n = numel(input_shape);
        Ok(self.local(w, input_shape.to_vec(), |d, _, s| {
            s.map(|v| d.index_scatter_add(v, &idx, n))
        }))
    }

    /// im2col over all channels (groups = 1): [C*kh*kw, N*OH*OW], local.
    pub fn im2col(&self, x: &Tensor, win: &Window) -> Result<Tensor> {
        self.check(x)?;
        let ws = [
            1,
            x.shape.get(1).copied().unwrap_or(0),
            win.kernel.0,
            win.kernel.1,
        ];
        let (g, _) = self.conv_geom(&x.shape, &ws, win.stride, win.padding, win.dilation, 1)?;
        let (oh, ow) = g.out_hw();
        Ok(
            self.local(x, vec![g.c * g.kh * g.kw, g.n * oh * ow], |d, _, s| {
                s.map(|v| d.im2col(v, &g, 0, g.c))
            }),
        )
    }

    /// col2im, the adjoint of `im2col`, back to `input_shape` (NCHW), local.
    pub fn col2im(&self, cols: &Tensor, input_shape: &[usize], win: &Window) -> Result<Tensor> {
        self.check(cols)?;
        if input_shape.len() != 4 {
            return shape_err(format!("col2im needs an NCHW shape, got {input_shape:?}"));
        }
        let ws = [1, input_shape[1], win.kernel.0, win.kernel.1];
        let (g, _) = self.conv_geom(input_shape, &ws, win.stride, win.padding, win.dilation, 1)?;
        let (oh, ow) = g.out_hw();
        if cols.shape != [g.c * g.kh * g.kw, g.n * oh * ow] {
            return shape_err(format!(
                "col2im: columns {:?} do not match input {input_shape:?}",
                cols.shape
            ));
        }
        Ok(self.local(cols, input_shape.to_vec(), |d, _, s| {
            s.map(|v| d.col2im(v, &g))
        }))
    }

    // ---------------------------------------------------------- shape ops

    /// A strided view materialised: out[idx] = x[offset + sum idx_d st_d].
    pub fn gather(
        &self,
        x: &Tensor,
        shape: Vec<usize>,
        offset: usize,
        st: &[usize],
    ) -> Result<Tensor> {
        self.check(x)?;
        view_fits(&shape, offset, st, x.numel())?;
        Ok(self.local(x, shape.clone(), |d, _, s| {
            s.map(|v| d.gather(v, &shape, offset, st))
        }))
    }

    /// The adjoint of `gather` for a view that does not overlap itself
    /// (indexing with ints and positive-step slices): x placed at the view
    /// of a zero tensor of shape `out_shape` (backward of indexing).
    pub fn scatter(
        &self,
        x: &Tensor,
        out_shape: Vec<usize>,
        offset: usize,
        st: &[usize],
    ) -> Result<Tensor> {
        self.check(x)?;
        let view = x.shape.clone();
        let n = numel(&out_shape);
        view_fits(&view, offset, st, n)?;
        if view.iter().zip(st).any(|(&s, &t)| s > 1 && t == 0) {
            return invalid("scatter: a view with stride 0 overlaps itself");
        }
        Ok(self.local(x, out_shape, |d, _, s| {
            s.map(|v| {
                let mut out = d.zeros(n);
                d.scatter(v, &mut out, &view, offset, st);
                out
            })
        }))
    }

    pub fn reshape(&self, x: &Tensor, shape: Vec<usize>) -> Result<Tensor> {
        self.check(x)?;
        if numel(&shape) != x.numel() {
            return shape_err(format!("cannot reshape {:?} into {shape:?}", x.shape));
        }
        Ok(Tensor {
            session: x.session,
            shape,
            shares: x.shares.clone(),
        })
    }

    /// Concatenate along `dim`; all other dims must agree.
    pub fn cat(&self, xs: &[&Tensor], dim: usize) -> Result<Tensor> {
        let first = xs
            .first()
            .ok_or_else(|| EngineError::Invalid("cat of an empty list".into()))?;
        let r = first.shape.len();
        if dim >= r {
            return shape_err(format!("cat: dim {dim} out of range for rank {r}"));
        }
        for t in xs {
            self.check(t)?;
            if t.shape.len() != r
                || t.shape
                    .iter()
                    .enumerate()
                    .any(|(d, &s)| d != dim && s != first.shape[d])
            {
                return shape_err(format!(
                    "cat: shapes {:?} and {:?} differ outside dim {dim}",
                    first.shape, t.shape
                ));
            }
        }
        let outer = numel(&first.shape[..dim]);
        let mut shape = first.shape.clone();
        shape[dim] = xs.iter().map(|t| t.shape[dim]).sum();
        let total_inner = numel(&shape[dim..]);
        let s = self
            .ranks
            .iter()
            .map(|&i| {
                let d = self.dev(i);
                let mut out = AShare {
                    a: d.zeros(numel(&shape)),
                    b: d.zeros(numel(&shape)),
                };
                // Each input fills a [outer, inner_t] view of the output.
                let mut off = 0;
                for t in xs {
                    let inner = numel(&t.shape[dim..]);
                    let src = t.at(i)?;
                    for (dst, sv) in [(&mut out.a, &src.a), (&mut out.b, &src.b)] {
                        d.scatter(sv, dst, &[outer, inner], off, &[total_inner, 1]);
                    }
                    off += inner;
                }
                Ok(out)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.wrap(shape, s))
    }

    /// Zero padding: `pads[d] = (before, after)` for every dim.
    pub fn pad(&self, x: &Tensor, pads: &[(usize, usize)]) -> Result<Tensor> {
        self.check(x)?;
        if pads.len() != x.shape.len() {
            return shape_err("pad: one (before, after) pair per dim");
        }
        let shape: Vec<usize> = x
            .shape
            .iter()
            .zip(pads)
            .map(|(s, (a, b))| s + a + b)
            .collect();
        let os = ring::strides(&shape);
        let offset: usize = pads.iter().zip(&os).map(|((a, _), st)| a * st).sum();
        let total = numel(&shape);
        let xshape = x.shape.clone();
        Ok(self.local(x, shape, |d, _, s| {
            s.map(|v| {
                let mut out = d.zeros(total);
                d.scatter(v, &mut out, &xshape, offset, &os);
                out
            })
        }))
    }

    /// Sum over the given dims (removed from the shape unless `keepdim`).
    pub fn sum(&self, x: &Tensor, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        self.check(x)?;
        let r = x.shape.len();
        if dims.iter().any(|&d| d >= r) {
            return shape_err(format!(
                "sum: dims {dims:?} out of range for shape {:?}",
                x.shape
            ));
        }
        let kept: Vec<usize> = x
            .shape
            .iter()
            .enumerate()
            .map(|(d, &s)| if dims.contains(&d) { 1 } else { s })
            .collect();
        // Runs of adjacent reduced dims, summed from the last run to the
        // first, each as the middle axis of an [outer, len, inner] view (no
        // data movement): a reduced dim becomes 1 and the others keep place.
        let mut ds: Vec<usize> = dims.to_vec();
        ds.sort_unstable();
        ds.dedup();
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for &d in &ds {
            match runs.last_mut() {
                Some((_, end)) if *end == d => *end = d + 1,
                _ => runs.push((d, d + 1)),
            }
        }
        let red = |dev: &dyn Device, v: &Buf| {
            let mut cur = x.shape.clone();
            let mut out: Option<Buf> = None;
            for &(d0, d1) in runs.iter().rev() {
                let (outer, len, inner) =
                    (numel(&cur[..d0]), numel(&cur[d0..d1]), numel(&cur[d1..]));
                out = Some(dev.sum_axis(out.as_ref().unwrap_or(v), outer, len, inner));
                cur[d0..d1].iter_mut().for_each(|c| *c = 1);
            }
            out.unwrap_or_else(|| v.clone())
        };
        let shape = if keepdim {
            kept.clone()
        } else {
            x.shape
                .iter()
                .enumerate()
                .filter(|(d, _)| !dims.contains(d))
                .map(|(_, &s)| s)
                .collect()
        };
        Ok(self.local(x, shape, |d, _, s| s.map(|v| red(d, v))))
    }

    /// One party's view of a tensor: its two components (for the security
    /// sanity tests and the "what each party sees" demo).
    pub fn party_share(&self, x: &Tensor, party: usize) -> Result<(Vec<u64>, Vec<u64>)> {
        self.check(x)?;
        if party > 2 {
            return invalid(format!("party must be 0, 1 or 2, got {party}"));
        }
        let s = x.at(party)?;
        Ok((s.a.to_vec(), s.b.to_vec()))
    }
}
