//! The Python methods of `Session`, grouped as in the engine's
//! `runtime/{mod,ops,layout,nonlinear}.rs`. pyo3 takes one `#[pymethods]`
//! block per class (its `multiple-pymethods` feature is off), so the few
//! lifecycle methods (new, connect, close, ids, counters) are here too,
//! first, each a few lines over `session`'s helpers. Every method releases
//! the GIL around its engine call (`call`, `Session::run`).

use crate::error::call;
use crate::error::invalid;
use crate::net::Links;
use crate::session::{config, Session};
use crate::tensor::{bytes_of, f64s, i64s, u64_bytes, win, words, Tensor, Win};
use cryptgpu_engine::protocol::PrgState;
use cryptgpu_engine::runtime::{Session as EngSession, Tensor as EngTensor};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::sync::Arc;

/// A hosted party's PRG streams for Python: (rank, own key, own counter,
/// next key, next counter).
type PrgTuple = (usize, Vec<u8>, u128, Vec<u8>, u128);

/// Little-endian u64 bytes as ring words, refusing a partial word.
fn u64s(b: &[u8]) -> PyResult<Vec<u64>> {
    if !b.len().is_multiple_of(8) {
        return Err(invalid(
            "a share buffer's length is not a multiple of 8 bytes",
        ));
    }
    Ok(words(b))
}

#[pymethods]
impl Session {
    // ---- lifecycle (runtime/mod.rs) ----

    #[new]
    #[pyo3(signature = (precision_bits=16, seed=None, timeout_s=60.0, device="cpu"))]
    fn new(
        py: Python<'_>,
        precision_bits: u32,
        seed: Option<u64>,
        timeout_s: f64,
        device: &str,
    ) -> PyResult<Self> {
        let cfg = config(precision_bits, seed, timeout_s, device)?;
        Ok(Session(Arc::new(call(py, || EngSession::new(cfg))?)))
    }

    /// One party of a multi-process session: listens on `bind` (default
    /// `peers[rank]`) and connects to its two neighbours over `transport`,
    /// "zmq" (ZeroMQ, the default) or "tcp" (plain TCP streams).
    #[staticmethod]
    #[pyo3(signature = (rank, peers, transport="zmq", bind=None, precision_bits=16, seed=None, timeout_s=60.0, key=None, pubkeys=None, device="cpu", job=""))]
    #[allow(clippy::too_many_arguments)]
    fn connect(
        py: Python<'_>,
        rank: usize,
        peers: Vec<String>,
        transport: &str,
        bind: Option<String>,
        precision_bits: u32,
        seed: Option<u64>,
        timeout_s: f64,
        key: Option<String>,
        pubkeys: Option<Vec<String>>,
        device: &str,
        job: &str,
    ) -> PyResult<Self> {
        let cfg = config(precision_bits, seed, timeout_s, device)?;
        let (key, pubkeys) = (key.as_deref(), pubkeys.as_deref());
        let links = Links::new(
            rank,
            &peers,
            transport,
            bind.as_deref(),
            cfg.timeout,
            key,
            pubkeys,
            job,
        )?;
        let s = call(py, || EngSession::single(cfg, rank, links.connect()?))?;
        Ok(Session(Arc::new(s)))
    }

    /// End the session: close this process's links (the ZeroMQ transport
    /// exchanges BYE with its neighbours so no last message is lost).
    /// Raises `PeerError` when a neighbour failed the session after this
    /// party's last operation: this party finished, the job did not.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let s = self.0.clone();
        call(py, move || s.close())
    }

    /// Tell this process's neighbours that it failed outside the engine
    /// (an exception in the party's own code), so that they raise
    /// `PeerError` at once instead of at the timeout (in a local SPMD
    /// session every party does); ``ended=True``: its program ended, only a
    /// neighbour waiting for its message fails. The session is unusable
    /// afterwards.
    #[pyo3(signature = (why, ended = false))]
    fn abort(&self, py: Python<'_>, why: &str, ended: bool) {
        let (s, why) = (self.0.clone(), why.to_string());
        py.allow_threads(move || s.abort(&why, ended));
    }

    #[getter]
    fn id(&self) -> u64 {
        self.0.id
    }
    /// The ranks this session hosts ([0, 1, 2] locally, [r] in SPMD).
    #[getter]
    fn ranks(&self) -> Vec<usize> {
        self.0.ranks().to_vec()
    }
    #[getter]
    fn precision_bits(&self) -> u32 {
        self.0.frac_bits
    }

    /// Per-party counters: a list of three dicts {op: {calls, rounds, messages, bytes}}.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let s = &self.0;
        let st = call(py, || s.stats())?;
        st.into_iter()
            .map(|m| {
                let d = PyDict::new(py);
                for (k, v) in m {
                    let e = PyDict::new(py);
                    e.set_item("calls", v.calls)?;
                    e.set_item("rounds", v.rounds)?;
                    e.set_item("messages", v.messages)?;
                    e.set_item("bytes", v.bytes)?;
                    d.set_item(k, e)?;
                }
                Ok(d)
            })
            .collect()
    }

    /// Per hosted party, (rounds, bytes sent) since the session started,
    /// never reset (per-layer statistics take differences of these).
    fn comm_totals(&self, py: Python<'_>) -> PyResult<Vec<(u64, u64)>> {
        let s = &self.0;
        call(py, || s.comm_totals())
    }

    fn reset_stats(&self, py: Python<'_>) -> PyResult<()> {
        let s = &self.0;
        call(py, || s.reset_stats())
    }

    /// The PRG streams of the hosted parties: a list of (rank, own key,
    /// own counter, next key, next counter) (checkpoints).
    fn prg_states(&self, py: Python<'_>) -> PyResult<Vec<PrgTuple>> {
        let s = &self.0;
        let st = call(py, || s.prg_states())?;
        Ok(st
            .into_iter()
            .map(|(r, p)| (r, p.own.0.to_vec(), p.own.1, p.next.0.to_vec(), p.next.1))
            .collect())
    }

    /// Restore the PRG streams from a list like `prg_states` returns, and
    /// check them with the neighbours (one round).
    fn restore_prg_states(&self, py: Python<'_>, states: Vec<PrgTuple>) -> PyResult<()> {
        let key = |k: &[u8]| -> PyResult<[u8; 16]> {
            k.try_into()
                .map_err(|_| invalid(format!("a PRG key has 16 bytes, got {}", k.len())))
        };
        let st = states
            .iter()
            .map(|(r, ok, oc, nk, nc)| {
                Ok((
                    *r,
                    PrgState {
                        own: (key(ok)?, *oc),
                        next: (key(nk)?, *nc),
                    },
                ))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let s = &self.0;
        call(py, || s.restore_prg_states(&st))
    }

    /// A tensor from the hosted parties' raw components (u64 bytes each, in
    /// hosted-rank order): the inverse of `party_share`.
    fn tensor_from_shares(
        &self,
        py: Python<'_>,
        shape: Vec<usize>,
        comps: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> PyResult<Tensor> {
        let words = comps
            .iter()
            .map(|(a, b)| Ok((u64s(a)?, u64s(b)?)))
            .collect::<PyResult<Vec<_>>>()?;
        self.run(py, |s| s.tensor_from_shares(shape, words))
    }

    /// Check that the parties' copies of each replicated component of `xs`
    /// agree (checkpoints; two rounds): InvalidArgumentError where not.
    fn check_replicas(&self, py: Python<'_>, xs: Vec<PyRef<'_, Tensor>>) -> PyResult<()> {
        let ts: Vec<EngTensor> = xs.iter().map(|t| t.0.clone()).collect();
        let s = &self.0;
        call(py, || s.check_replicas(&ts.iter().collect::<Vec<_>>()))
    }

    /// Truncate by the exact protocol (True) or ABY3's probabilistic one.
    fn set_exact_truncation(&self, py: Python<'_>, exact: bool) -> PyResult<()> {
        let s = &self.0;
        call(py, || s.set_exact_truncation(exact))
    }

    /// Whether truncations currently use the exact protocol.
    #[getter]
    fn exact_truncation(&self, py: Python<'_>) -> PyResult<bool> {
        let s = &self.0;
        call(py, || s.exact_truncation())
    }

    // ---- data in and out (runtime/ops.rs) ----

    fn share(
        &self,
        py: Python<'_>,
        data: &[u8],
        shape: Vec<usize>,
        src: usize,
    ) -> PyResult<Tensor> {
        let v = f64s(data)?;
        self.run(py, |s| s.share_f64(&v, shape, src))
    }
    fn public_tensor(&self, py: Python<'_>, data: &[u8], shape: Vec<usize>) -> PyResult<Tensor> {
        let v = f64s(data)?;
        self.run(py, |s| s.public_tensor(&v, shape))
    }
    fn reveal<'py>(&self, py: Python<'py>, x: &Tensor) -> PyResult<Bound<'py, PyBytes>> {
        let s = &self.0;
        let v = call(py, || s.reveal_f64(&x.0))?;
        Ok(bytes_of(py, &v))
    }
    /// Reveal to party `dst`; None in a process that does not host it.
    fn reveal_to<'py>(
        &self,
        py: Python<'py>,
        x: &Tensor,
        dst: usize,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let s = &self.0;
        let v = call(py, || s.reveal_to_f64(&x.0, dst))?;
        Ok(v.map(|v| bytes_of(py, &v)))
    }
    /// One party's two share components as raw ring words (u64 bytes).
    fn party_share<'py>(
        &self,
        py: Python<'py>,
        x: &Tensor,
        party: usize,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let s = &self.0;
        let (a, b) = call(py, || s.party_share(&x.0, party))?;
        Ok((u64_bytes(py, &a), u64_bytes(py, &b)))
    }

    // ---- arithmetic (runtime/ops.rs) ----

    fn add(&self, py: Python<'_>, x: &Tensor, y: &Tensor) -> PyResult<Tensor> {
        self.run(py, |s| s.add(&x.0, &y.0))
    }
    fn sub(&self, py: Python<'_>, x: &Tensor, y: &Tensor) -> PyResult<Tensor> {
        self.run(py, |s| s.sub(&x.0, &y.0))
    }
    fn neg(&self, py: Python<'_>, x: &Tensor) -> PyResult<Tensor> {
        self.run(py, |s| s.neg(&x.0))
    }
    fn mul(&self, py: Python<'_>, x: &Tensor, y: &Tensor) -> PyResult<Tensor> {
        self.run(py, |s| s.mul(&x.0, &y.0))
    }
    fn mul_int(&self, py: Python<'_>, x: &Tensor, y: &Tensor) -> PyResult<Tensor> {
        self.run(py, |s| s.mul_int(&x.0, &y.0))
    }
    fn add_public(&self, py: Python<'_>, x: &Tensor, p: &[u8]) -> PyResult<Tensor> {
        let v = f64s(p)?;
        self.run(py, |s| s.add_public(&x.0, &v))
    }
    fn mul_public(&self, py: Python<'_>, x: &Tensor, p: &[u8]) -> PyResult<Tensor> {
        let v = f64s(p)?;
        self.run(py, |s| s.mul_public(&x.0, &v))
    }
    /// sum_k c_k x^k by Horner's rule in one engine call (coefficients
    /// lowest first).
    /// With `plus`, adds plus_coeff * plus (folded into the last product's
    /// truncation).
    #[pyo3(signature = (x, coeffs, plus=None, plus_coeff=0.0))]
    fn horner(
        &self,
        py: Python<'_>,
        x: &Tensor,
        coeffs: Vec<f64>,
        plus: Option<&Tensor>,
        plus_coeff: f64,
    ) -> PyResult<Tensor> {
        self.run(py, |s| {
            s.horner(&x.0, &coeffs, plus.map(|w| (&w.0, plus_coeff)))
        })
    }
    /// x * y / 2^shift with one truncation.
    fn mul_shift(&self, py: Python<'_>, x: &Tensor, y: &Tensor, shift: u32) -> PyResult<Tensor> {
        self.run(py, |s| s.mul_shift(&x.0, &y.0, shift))
    }
    /// x * p for public integers p (little-endian int64 bytes: one, or one
    /// per element): local, no truncation.
    fn mul_public_int(&self, py: Python<'_>, x: &Tensor, p: &[u8]) -> PyResult<Tensor> {
        let v = i64s(p)?;
        self.run(py, |s| s.mul_public_int(&x.0, &v))
    }
    fn div_public_int(&self, py: Python<'_>, x: &Tensor, d: u64) -> PyResult<Tensor> {
        self.run(py, |s| s.div_public_int(&x.0, d))
    }
    fn div_public_int_fresh(&self, py: Python<'_>, x: &Tensor, d: u64) -> PyResult<Tensor> {
        self.run(py, |s| s.div_public_int_fresh(&x.0, d))
    }
    fn div_public_int_exact(
        &self,
        py: Python<'_>,
        x: &Tensor,
        d: u64,
        fresh: bool,
    ) -> PyResult<Tensor> {
        self.run(py, |s| s.div_public_int_exact(&x.0, d, fresh))
    }
    fn matmul(&self, py: Python<'_>, x: &Tensor, y: &Tensor) -> PyResult<Tensor> {
        self.run(py, |s| s.matmul(&x.0, &y.0))
    }
    fn matmul_t(&self, py: Python<'_>, x: &Tensor, y: &Tensor) -> PyResult<Tensor> {
        self.run(py, |s| s.matmul_t(&x.0, &y.0))
    }
    fn matmul_public(
        &self,
        py: Python<'_>,
        x: &Tensor,
        p: &[u8],
        pshape: Vec<usize>,
        public_left: bool,
    ) -> PyResult<Tensor> {
        let v = f64s(p)?;
        self.run(py, |s| s.matmul_public(&x.0, &v, &pshape, public_left))
    }
    #[allow(clippy::too_many_arguments)]
    fn conv2d(
        &self,
        py: Python<'_>,
        x: &Tensor,
        w: &Tensor,
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> PyResult<Tensor> {
        self.run(py, |s| {
            s.conv2d(&x.0, &w.0, stride, padding, dilation, groups)
        })
    }
    #[allow(clippy::too_many_arguments)]
    fn conv2d_public(
        &self,
        py: Python<'_>,
        x: &Tensor,
        w: &[u8],
        wshape: Vec<usize>,
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> PyResult<Tensor> {
        let v = f64s(w)?;
        self.run(py, |s| {
            s.conv2d_public(&x.0, &v, &wshape, stride, padding, dilation, groups)
        })
    }
    /// Gradients of `conv2d(x, w)` from the output gradient `gy`, each when
    /// needed: (dL/dx, dL/dw). The weight is `w` (shared) or `w_public`
    /// (plaintext bytes) of shape `wshape`.
    #[pyo3(signature = (x, w, w_public, wshape, gy, window, groups, need_x, need_w))]
    #[allow(clippy::too_many_arguments)]
    fn conv2d_backward(
        &self,
        py: Python<'_>,
        x: &Tensor,
        w: Option<&Tensor>,
        w_public: Option<&[u8]>,
        wshape: Vec<usize>,
        gy: &Tensor,
        window: Win,
        groups: usize,
        need_x: bool,
        need_w: bool,
    ) -> PyResult<(Option<Tensor>, Option<Tensor>)> {
        let wp = w_public.map(f64s).transpose()?;
        let w = w.map(|t| t.0.clone());
        let s = &self.0;
        let (gx, gw) = call(py, || {
            let conv = (win(window), groups);
            s.conv2d_backward(
                &x.0,
                w.as_ref(),
                wp.as_deref(),
                &wshape,
                &gy.0,
                conv,
                (need_x, need_w),
            )
        })?;
        Ok((gx.map(Tensor), gw.map(Tensor)))
    }
    /// `conv_transpose2d`: the input gradient of a conv2d (weight `w` or
    /// `w_public` of `wshape`) over an input of `out_shape`, with `x` as
    /// its output gradient.
    #[pyo3(signature = (x, w, w_public, wshape, out_shape, window, groups))]
    #[allow(clippy::too_many_arguments)]
    fn conv_transpose2d(
        &self,
        py: Python<'_>,
        x: &Tensor,
        w: Option<&Tensor>,
        w_public: Option<&[u8]>,
        wshape: Vec<usize>,
        out_shape: Vec<usize>,
        window: Win,
        groups: usize,
    ) -> PyResult<Tensor> {
        let wp = w_public.map(f64s).transpose()?;
        let w = w.map(|t| t.0.clone());
        let s = &self.0;
        call(py, || {
            let conv = (win(window), groups);
            s.conv_transpose2d(&x.0, w.as_ref(), wp.as_deref(), &wshape, &out_shape, conv)
        })
        .map(Tensor)
    }
    fn avg_pool2d(
        &self,
        py: Python<'_>,
        x: &Tensor,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> PyResult<Tensor> {
        self.run(py, |s| s.avg_pool2d(&x.0, kernel, stride, padding))
    }
    /// The gradient of `avg_pool2d` for an input of `input_shape`.
    fn avg_pool2d_backward(
        &self,
        py: Python<'_>,
        gy: &Tensor,
        input_shape: Vec<usize>,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> PyResult<Tensor> {
        self.run(py, |s| {
            s.avg_pool2d_backward(&gy.0, &input_shape, kernel, stride, padding)
        })
    }

    // ---- layout (runtime/layout.rs) ----

    fn gather(
        &self,
        py: Python<'_>,
        x: &Tensor,
        shape: Vec<usize>,
        offset: usize,
        strides: Vec<usize>,
    ) -> PyResult<Tensor> {
        self.run(py, |s| s.gather(&x.0, shape, offset, &strides))
    }
    fn take(
        &self,
        py: Python<'_>,
        x: &Tensor,
        idx: Vec<usize>,
        shape: Vec<usize>,
    ) -> PyResult<Tensor> {
        self.run(py, |s| s.take(&x.0, &idx, shape))
    }
    fn put_add(
        &self,
        py: Python<'_>,
        x: &Tensor,
        idx: Vec<usize>,
        shape: Vec<usize>,
    ) -> PyResult<Tensor> {
        self.run(py, |s| s.put_add(&x.0, &idx, shape))
    }
    fn scatter(
        &self,
        py: Python<'_>,
        x: &Tensor,
        shape: Vec<usize>,
        offset: usize,
        strides: Vec<usize>,
    ) -> PyResult<Tensor> {
        self.run(py, |s| s.scatter(&x.0, shape, offset, &strides))
    }
    fn reshape(&self, py: Python<'_>, x: &Tensor, shape: Vec<usize>) -> PyResult<Tensor> {
        self.run(py, |s| s.reshape(&x.0, shape))
    }
    fn cat(&self, py: Python<'_>, xs: Vec<PyRef<'_, Tensor>>, dim: usize) -> PyResult<Tensor> {
        let ts: Vec<EngTensor> = xs.iter().map(|t| t.0.clone()).collect();
        self.run(py, |s| s.cat(&ts.iter().collect::<Vec<_>>(), dim))
    }
    fn pad(&self, py: Python<'_>, x: &Tensor, pads: Vec<(usize, usize)>) -> PyResult<Tensor> {
        self.run(py, |s| s.pad(&x.0, &pads))
    }
    #[pyo3(signature = (x, dims, keepdim=false))]
    fn sum(&self, py: Python<'_>, x: &Tensor, dims: Vec<usize>, keepdim: bool) -> PyResult<Tensor> {
        self.run(py, |s| s.sum(&x.0, &dims, keepdim))
    }

    // ---- nonlinear (runtime/nonlinear.rs) ----

    /// msb(x) * v (v = None: the 0/1 indicator x < 0), counted under `label`.
    #[pyo3(signature = (x, v=None, label="msb"))]
    fn msb_inject(
        &self,
        py: Python<'_>,
        x: &Tensor,
        v: Option<&Tensor>,
        label: &str,
    ) -> PyResult<Tensor> {
        let vv = v.map(|t| t.0.clone());
        self.run(py, |s| s.msb_inject(&x.0, vv.as_ref(), label))
    }
    fn relu(&self, py: Python<'_>, x: &Tensor) -> PyResult<Tensor> {
        self.run(py, |s| s.relu(&x.0))
    }
    /// ReLU and its derivative mask 1 - msb(x), in one call.
    fn relu_with_mask(&self, py: Python<'_>, x: &Tensor) -> PyResult<(Tensor, Tensor)> {
        let s = &self.0;
        let (y, m) = call(py, || s.relu_with_mask(&x.0))?;
        Ok((Tensor(y), Tensor(m)))
    }
    /// Maximum over the last dim, counted under `op`, and with `want_arg`
    /// the one-hot argmax.
    fn tournament(
        &self,
        py: Python<'_>,
        x: &Tensor,
        want_arg: bool,
        op: &str,
    ) -> PyResult<(Tensor, Option<Tensor>)> {
        let s = &self.0;
        let (v, a) = call(py, || s.tournament(&x.0, want_arg, op))?;
        Ok((Tensor(v), a.map(Tensor)))
    }
    /// A joint random integer below 3 `bound` that no party chooses (each
    /// party adds its own draw below `bound`).
    fn coin(&self, py: Python<'_>, bound: u64) -> PyResult<u64> {
        let s = &self.0;
        call(py, || s.coin(bound))
    }
    /// `window` is (kernel, stride, padding, dilation), each (h, w).
    fn pool_windows(&self, py: Python<'_>, x: &Tensor, window: Win) -> PyResult<Tensor> {
        self.run(py, |s| s.pool_windows(&x.0, &win(window)))
    }
    fn pool_scatter(
        &self,
        py: Python<'_>,
        w: &Tensor,
        input_shape: Vec<usize>,
        window: Win,
    ) -> PyResult<Tensor> {
        self.run(py, |s| s.pool_scatter(&w.0, &input_shape, &win(window)))
    }
}
