//! The exact truncation (protocol/trunc.rs) against plaintext, at the
//! magnitudes where ABY3's probabilistic truncation fails, and its
//! communication against the cost table of `protocol`.

mod common;

use cryptgpu_engine::net::OpStats;
use cryptgpu_engine::runtime::Session;

const F: u32 = 16;
const D: u64 = 1 << F;

/// Deterministic raw ring values v with |v| < lim, both signs, many near
/// the limit (the adversarial end for the 2-out-of-2 wrap).
fn adversarial(n: usize, lim: u64, seed: u64) -> Vec<u64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            // Every fourth value sits within 2^20 of the limit.
            let mag = if i % 4 == 0 {
                lim - 1 - (s >> 44)
            } else {
                s % lim
            };
            if s & (1 << 40) != 0 {
                mag.wrapping_neg()
            } else {
                mag
            }
        })
        .collect()
}

/// floor(v / d) for a signed v, in the ring.
fn floor_div(v: u64, d: u64) -> i64 {
    (v as i64).div_euclid(d as i64)
}

fn stats_of(s: &Session, op: &str) -> [OpStats; 3] {
    let st = s.stats().unwrap();
    [0, 1, 2].map(|i| st[i].get(op).copied().unwrap_or_default())
}

/// Elements of `got` more than `tol` units from floor(v / d).
fn misses(got: &[u64], v: &[u64], d: u64, tol: i64) -> usize {
    got.iter()
        .zip(v)
        .filter(|(g, w)| ((**g as i64).wrapping_sub(floor_div(**w, d))).abs() > tol)
        .count()
}

#[test]
fn exact_division_never_wraps_up_to_2_to_the_62() {
    let n = 1 << 16;
    for s in common::sessions(11) {
        let v = adversarial(n, 1 << 62, 5);
        let x = s.share_ring(v.clone(), vec![n], 0).unwrap();
        // Probabilistic: at these magnitudes about a quarter of the
        // elements wrap (probability |v| / 2^63), so the check below can fail.
        s.set_exact_truncation(false).unwrap();
        let t = s.div_public_int(&x, D).unwrap();
        let bad = misses(&s.reveal_ring(&t).unwrap(), &v, D, 1);
        assert!(
            bad > n / 10,
            "probabilistic truncation failed only {bad} times"
        );
        // Exact: floor(v / 2^f) - 0 or + 1 unit (the remainders' carry,
        // centred by the +1), for every element.
        s.set_exact_truncation(true).unwrap();
        let t = s.div_public_int(&x, D).unwrap();
        assert_eq!(misses(&s.reveal_ring(&t).unwrap(), &v, D, 1), 0);
        // Another divisor (an average pool's 9): K and B / d are rounded,
        // within 2 units.
        let t = s.div_public_int(&x, 9).unwrap();
        assert_eq!(misses(&s.reveal_ring(&t).unwrap(), &v, 9, 2), 0);
        // The session keeps working in both modes.
        s.set_exact_truncation(false).unwrap();
        let small = s.share_f64(&[1.5, -2.25], vec![2], 1).unwrap();
        let sq = s.reveal_f64(&s.mul(&small, &small).unwrap()).unwrap();
        assert!((sq[0] - 2.25).abs() <= 1.0 / D as f64);
    }
}

#[test]
fn exact_products_of_large_values_have_no_failures() {
    // Fixed-point products of magnitude near 2^30 (raw 2^62, the exact
    // protocol's limit at f = 16): mul, matmul and conv2d truncate through
    // the same path. Error: one truncation, within 1 unit of 2^-f.
    let n = 1 << 14;
    for s in common::sessions(12) {
        s.set_exact_truncation(true).unwrap();
        let a: Vec<f64> = (0..n)
            .map(|i| {
                let m = 32767.0 - (i % 1000) as f64 / 7.0;
                if i % 3 == 0 {
                    -m
                } else {
                    m
                }
            })
            .map(|v: f64| (v * 65536.0).round() / 65536.0)
            .collect();
        let b: Vec<f64> = (0..n)
            .map(|i| if i % 5 == 0 { -32767.5 } else { 32767.25 })
            .collect();
        let x = s.share_f64(&a, vec![n], 0).unwrap();
        let y = s.share_f64(&b, vec![n], 2).unwrap();
        let got = s.reveal_f64(&s.mul(&x, &y).unwrap()).unwrap();
        let ulp = 1.0 / D as f64;
        for i in 0..n {
            let want = a[i] * b[i];
            assert!(
                (got[i] - want).abs() <= ulp,
                "element {i}: {} against {want}",
                got[i]
            );
        }
        // A matmul whose dot products reach 2^29: [1, 4] x [4, 1] rows.
        let row = s.share_f64(&[16000.0; 4], vec![1, 4], 0).unwrap();
        let col = s.share_f64(&[8000.0; 4], vec![4, 1], 1).unwrap();
        let mm = s.reveal_f64(&s.matmul(&row, &col).unwrap()).unwrap();
        assert!((mm[0] - 512_000_000.0).abs() <= ulp);
    }
}

#[test]
fn exact_truncation_costs_match_the_table() {
    // protocol/mod.rs: 2 rounds; per element P0 sends 3 ring elements, P1
    // 2, P2 2 after a product and 1 for a replicated input.
    for s in common::sessions(13) {
        s.set_exact_truncation(true).unwrap();
        let n = 96;
        let x = s.share_f64(&vec![1.25; n], vec![n], 0).unwrap();
        let y = s.share_f64(&vec![-3.5; n], vec![n], 1).unwrap();
        s.reset_stats().unwrap();
        s.mul(&x, &y).unwrap();
        let st = stats_of(&s, "mul");
        assert_eq!(st.map(|p| p.rounds), [2, 2, 2]);
        assert_eq!(st.map(|p| p.bytes), [3, 2, 2].map(|k| 8 * k * n as u64));
        s.reset_stats().unwrap();
        s.div_public_int(&x, D).unwrap();
        let st = stats_of(&s, "truncate");
        assert_eq!(st.map(|p| p.rounds), [2, 2, 2]);
        assert_eq!(st.map(|p| p.bytes), [3, 2, 1].map(|k| 8 * k * n as u64));
        // a divisor that is not a power of two: P0's skew sends nothing
        s.reset_stats().unwrap();
        s.div_public_int(&x, 9).unwrap();
        let st = stats_of(&s, "truncate");
        assert_eq!(st.map(|p| p.rounds), [2, 2, 2]);
        assert_eq!(st.map(|p| p.bytes), [3, 2, 1].map(|k| 8 * k * n as u64));
        // Switching back restores the probabilistic cost (1 element each).
        s.set_exact_truncation(false).unwrap();
        s.reset_stats().unwrap();
        s.mul(&x, &y).unwrap();
        assert_eq!(stats_of(&s, "mul").map(|p| p.bytes), [8 * n as u64; 3]);
    }
}

#[test]
fn fresh_division_rounds_equal_elements_independently_at_the_same_cost() {
    // n copies of one sharing (what `expand` gives): `div_public_int`
    // rounds them all the same way, `div_public_int_fresh` each on its own,
    // so their mean is v / d within a few standard deviations (each
    // rounding is 0 or 1 unit: variance at most 1/4), in both protocols,
    // with the same rounds and bytes as the plain division.
    let n = 1 << 14;
    let d = 1u64 << 20; // a power of two: no rounded 2^64 / d in the exact protocol
    let v = 3 * D + 12_345; // v / d = 0.1875.. units: rounds to 0 or 1
    let want = v as f64 / d as f64;
    let sd = (0.25 / n as f64).sqrt();
    for s in common::sessions(14) {
        for exact in [false, true] {
            s.set_exact_truncation(exact).unwrap();
            let one = s.share_ring(vec![v], vec![1], 0).unwrap();
            let x = s.gather(&one, vec![n], 0, &[0]).unwrap();
            let same = s.reveal_ring(&s.div_public_int(&x, d).unwrap()).unwrap();
            assert!(same.iter().all(|g| *g == same[0]), "exact={exact}");
            s.reset_stats().unwrap();
            let t = s.div_public_int_fresh(&x, d).unwrap();
            let st = stats_of(&s, "truncate");
            s.reset_stats().unwrap();
            s.div_public_int(&x, d).unwrap();
            let plain = stats_of(&s, "truncate");
            assert_eq!(
                st.map(|p| (p.rounds, p.bytes)),
                plain.map(|p| (p.rounds, p.bytes))
            );
            let got = s.reveal_ring(&t).unwrap();
            assert!(got.iter().all(|g| *g == 0 || *g == 1), "exact={exact}");
            let mean = got.iter().sum::<u64>() as f64 / n as f64;
            assert!(
                (mean - want).abs() < 6.0 * sd,
                "exact={exact}: mean {mean} against {want}"
            );
        }
    }
}

#[test]
fn exact_division_is_unbiased_for_divisors_that_are_not_powers_of_two() {
    // v / d for v = 7 and v = -5 (in fixed point: 7 * 2^16 and -5 * 2^16
    // units of 2^-16), n elements: each result is
    // within 2 units of v / d (module doc of protocol/trunc.rs), so the
    // mean of n is within 6 * 2 / sqrt(n) = 0.033 units of v / d (6 sigma
    // of a variable bounded by 2). Until 2026-12-06 the rounded K = 2^64 / d
    // left -0.083 units for d = 3, -0.071 for 7, +0.053 for 9, +0.090 for
    // 25 and +0.096 for 1000.
    let n = 1 << 17;
    let tol = 6.0 * 2.0 / (n as f64).sqrt();
    for s in common::sessions(15) {
        s.set_exact_truncation(true).unwrap();
        for v in [7 * D as i64, -5 * D as i64] {
            let x = s.share_ring(vec![v as u64; n], vec![n], 0).unwrap();
            for d in [3u64, 7, 9, 25, 1000] {
                let got = s.reveal_ring(&s.div_public_int(&x, d).unwrap()).unwrap();
                let mean = got.iter().map(|g| *g as i64 as f64).sum::<f64>() / n as f64;
                let want = v as f64 / d as f64;
                assert!(
                    (mean - want).abs() < tol,
                    "v = {v}, d = {d}: mean {mean} against {want}"
                );
            }
        }
    }
}
