//! The protocols that moved into the engine (ReLU with its gradient mask,
//! the max/argmax tournament, conv2d backward, the joint coin) against
//! plaintext f64, each body run on every device present: the CPU always, the
//! CUDA device where a GPU is found (`on_every_device!`, as candle's test
//! macro does). Tolerances: one truncation leaves an error of at most 1 unit
//! of 2^-f per truncated value (protocol/arith.rs); a sum of K truncated
//! products, at most K units.

mod common;

use cryptgpu_engine::runtime::{Session, Window};

const F: u32 = 16;
const ULP: f64 = 1.0 / (1u64 << F) as f64;

/// `#[test] fn name()` running `body(session)` once per device present.
macro_rules! on_every_device {
    ($name:ident, |$s:ident| $body:block) => {
        #[test]
        fn $name() {
            for $s in common::sessions(5) {
                let _: &Session = &$s;
                $body
            }
        }
    };
}

/// Deterministic values in (-scale, scale) on the fixed-point grid.
fn values(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            ((2.0 * u - 1.0) * scale / ULP).round() * ULP
        })
        .collect()
}

fn close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}]: {g} vs {w} (tol {tol})");
    }
}

on_every_device!(relu_with_mask_is_relu_and_its_derivative, |s| {
    let v = values(300, 1, 50.0);
    let x = s.share_f64(&v, vec![300], 0).unwrap();
    let (y, m) = s.relu_with_mask(&x).unwrap();
    // Exact: the sign bit is exact and x - msb(x) x has no truncation.
    let want: Vec<f64> = v.iter().map(|&a| a.max(0.0)).collect();
    close(&s.reveal_f64(&y).unwrap(), &want, 0.0, "relu");
    let dmask: Vec<f64> = v.iter().map(|&a| if a < 0.0 { 0.0 } else { 1.0 }).collect();
    close(&s.reveal_f64(&m).unwrap(), &dmask, 0.0, "mask");
});

on_every_device!(tournament_gives_max_and_first_argmax, |s| {
    for k in [1usize, 2, 3, 4, 5, 7, 8, 16] {
        let rows = 6;
        let mut v = values(rows * k, k as u64, 20.0);
        if k >= 2 {
            v[1] = v[0]; // a tie: the first index wins
        }
        let x = s.share_f64(&v, vec![rows, k], 1).unwrap();
        let (m, a) = s.tournament(&x, true, "max").unwrap();
        let (m2, none) = s.tournament(&x, false, "max").unwrap();
        assert!(none.is_none());
        let a = a.unwrap();
        assert_eq!(a.shape, vec![rows, k]);
        let (got, got2, oh) = (
            s.reveal_f64(&m).unwrap(),
            s.reveal_f64(&m2).unwrap(),
            s.reveal_f64(&a).unwrap(),
        );
        for r in 0..rows {
            let row = &v[r * k..(r + 1) * k];
            let best = row.iter().cloned().fold(f64::MIN, f64::max);
            let first = row.iter().position(|&x| x == best).unwrap();
            // Exact: comparisons and the selection products are exact.
            assert_eq!(got[r], best, "k {k} row {r}");
            assert_eq!(got2[r], best, "k {k} row {r}");
            for j in 0..k {
                let want = if j == first { 1.0 } else { 0.0 };
                assert_eq!(oh[r * k + j], want, "k {k} row {r} slot {j}");
            }
        }
    }
    let empty = s.share_f64(&[], vec![3, 0], 0).unwrap();
    assert!(s.tournament(&empty, true, "max").is_err());
});

/// Plain f64 convolution (NCHW, groups) and its two gradients.
#[allow(clippy::too_many_arguments)]
fn conv_grads(
    x: &[f64],
    xs: [usize; 4],
    w: &[f64],
    ws: [usize; 4],
    gy: &[f64],
    st: usize,
    pad: usize,
    groups: usize,
) -> (Vec<f64>, Vec<f64>) {
    let [n, c, h, wd] = xs;
    let [o, cg, kh, kw] = ws;
    let oh = (h + 2 * pad - kh) / st + 1;
    let ow = (wd + 2 * pad - kw) / st + 1;
    let og = o / groups;
    let (mut gx, mut gw) = (vec![0.0; x.len()], vec![0.0; w.len()]);
    for b in 0..n {
        for oc in 0..o {
            let gi = oc / og;
            for y in 0..oh {
                for xx in 0..ow {
                    let g = gy[((b * o + oc) * oh + y) * ow + xx];
                    for ci in 0..cg {
                        let ch = gi * cg + ci;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (y * st + ky) as isize - pad as isize;
                                let ix = (xx * st + kx) as isize - pad as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xi = ((b * c + ch) * h + iy as usize) * wd + ix as usize;
                                let wi = ((oc * cg + ci) * kh + ky) * kw + kx;
                                gx[xi] += w[wi] * g;
                                gw[wi] += x[xi] * g;
                            }
                        }
                    }
                }
            }
        }
    }
    (gx, gw)
}

on_every_device!(conv2d_backward_matches_plaintext, |s| {
    for (groups, c, o) in [(1usize, 3usize, 4usize), (2, 4, 6)] {
        let (xs, ws) = ([2, c, 5, 5], [o, c / groups, 3, 3]);
        let (st, pad) = (1, 1);
        let x = values(xs.iter().product(), 3, 2.0);
        let w = values(ws.iter().product(), 4, 1.0);
        let gy = values(2 * o * 5 * 5, 5, 1.0);
        let (gx_want, gw_want) = conv_grads(&x, xs, &w, ws, &gy, st, pad, groups);
        let xt = s.share_f64(&x, xs.to_vec(), 0).unwrap();
        let wt = s.share_f64(&w, ws.to_vec(), 1).unwrap();
        let gt = s.share_f64(&gy, vec![2, o, 5, 5], 2).unwrap();
        let win = Window {
            kernel: (3, 3),
            stride: (st, st),
            padding: (pad, pad),
            dilation: (1, 1),
        };
        // dL/dw: one truncation of a sum of products, within a unit (2 for
        // margin). dL/dx: col2im adds up to kh*kw = 9 truncated columns, so
        // 9 units (+1 margin).
        let (tol, tol_x) = (2.0 * ULP, 10.0 * ULP);
        let (gx, gw) = s
            .conv2d_backward(&xt, Some(&wt), None, &ws, &gt, (win, groups), (true, true))
            .unwrap();
        close(
            &s.reveal_f64(&gx.unwrap()).unwrap(),
            &gx_want,
            tol_x,
            "gx shared w",
        );
        close(&s.reveal_f64(&gw.unwrap()).unwrap(), &gw_want, tol, "gw");
        let (gx, gw) = s
            .conv2d_backward(&xt, None, Some(&w), &ws, &gt, (win, groups), (true, true))
            .unwrap();
        assert!(gw.is_none(), "a public weight gets no gradient");
        close(
            &s.reveal_f64(&gx.unwrap()).unwrap(),
            &gx_want,
            tol_x,
            "gx public w",
        );
        // A gradient of the wrong shape is a shape error, not a panic.
        assert!(s
            .conv2d_backward(&xt, Some(&wt), None, &ws, &xt, (win, groups), (true, true))
            .is_err());
    }
});

on_every_device!(
    the_coin_is_below_three_bounds_and_costs_three_shares_and_a_reveal,
    |s| {
        s.reset_stats().unwrap();
        let c = s.coin(1 << 28).unwrap();
        assert!(c < 3 << 28);
        let st = s.stats().unwrap();
        for p in &st {
            assert_eq!(p["share"].rounds, 3);
            assert_eq!(p["share"].bytes, 16, "one element to each of two parties");
            assert_eq!(p["reveal"].rounds, 1);
            assert_eq!(p["reveal"].bytes, 8);
        }
        assert!(s.coin(0).is_err());
    }
);

// Two caller threads on one local session: each call runs its three parties
// to the end before the next starts (party 0 of one call must never pair
// with party 1 of the other). Every product and ReLU is checked: one
// truncation, at most 1 unit of 2^-f.
on_every_device!(calls_from_two_threads_do_not_interleave, |s| {
    let xs: Vec<Vec<f64>> = (0..2).map(|i| values(40, 11 + i, 2.0)).collect();
    let ts: Vec<_> = xs
        .iter()
        .map(|x| s.share_f64(x, vec![x.len()], 0).unwrap())
        .collect();
    std::thread::scope(|sc| {
        for (x, t) in xs.iter().zip(&ts) {
            let s = &s;
            sc.spawn(move || {
                for _ in 0..60 {
                    let sq = s.reveal_f64(&s.mul(t, t).unwrap()).unwrap();
                    for (g, v) in sq.iter().zip(x) {
                        assert!((g - v * v).abs() <= ULP, "{g} vs {}", v * v);
                    }
                    let r = s.reveal_f64(&s.relu(t).unwrap()).unwrap();
                    for (g, v) in r.iter().zip(x) {
                        assert!((g - v.max(0.0)).abs() <= ULP);
                    }
                }
            });
        }
    });
});
