//! MSB, bit injection and ReLU on the local runtime against plaintext, and
//! their communication against the table in `binary.rs`.

mod common;

fn edge_values(n: usize) -> Vec<f64> {
    let ulp = 1.0 / 65536.0;
    let mut v = vec![
        0.0,
        ulp,
        -ulp,
        1.0,
        -1.0,
        2f64.powi(30),
        -(2f64.powi(30)),
        12345.5,
        -0.5,
    ];
    let mut s: u64 = 88172645463325252;
    while v.len() < n {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let mag = 2f64.powi((s % 40) as i32 - 16);
        let sign = if s & (1 << 40) != 0 { -1.0 } else { 1.0 };
        v.push((sign * mag * ((s >> 20) % 1000) as f64 / 1000.0 * 65536.0).round() / 65536.0);
    }
    v.truncate(n);
    v
}

#[test]
fn relu_and_ltz_match_plaintext_at_the_edges() {
    for s in common::sessions(11) {
        for n in [1, 63, 64, 65, 1000] {
            let v = edge_values(n);
            let x = s.share_f64(&v, vec![n], 0).unwrap();
            let r = s.reveal_f64(&s.relu(&x).unwrap()).unwrap();
            let l = s
                .reveal_f64(&s.msb_inject(&x, None, "ltz").unwrap())
                .unwrap();
            for i in 0..n {
                // Exact: no truncation anywhere in ReLU or the indicator.
                assert_eq!(r[i], v[i].max(0.0), "relu of {}", v[i]);
                assert_eq!(l[i], if v[i] < 0.0 { 1.0 } else { 0.0 }, "ltz of {}", v[i]);
            }
        }
    }
}

#[test]
fn bit_injection_into_several_values_per_bit() {
    for s in common::sessions(11) {
        let x = s.share_f64(&[-1.0, 2.0, -3.0], vec![3], 0).unwrap();
        let vals = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0];
        let v = s.share_f64(&vals, vec![3, 2], 1).unwrap();
        let got = s
            .reveal_f64(&s.msb_inject(&x, Some(&v), "select").unwrap())
            .unwrap();
        assert_eq!(got, vec![1.0, 10.0, 0.0, 0.0, 3.0, 30.0]);
    }
}

#[test]
fn relu_costs_match_the_table() {
    for s in common::sessions(11) {
        for n in [1usize, 64, 1000, 4097] {
            let x = s.share_f64(&vec![1.5; n], vec![n], 2).unwrap();
            s.reset_stats().unwrap();
            s.relu(&x).unwrap();
            let st = s.stats().unwrap();
            let nw = n.div_ceil(64) as u64;
            let n = n as u64;
            // msb: P0 sends its 64 input planes; 181 AND planes for everyone.
            // Bit injection: one element per value in each of its two rounds.
            let want = [
                8 * (64 * nw + 181 * nw + 2 * n),
                8 * (181 * nw + 2 * n),
                8 * (181 * nw + 2 * n),
            ];
            for p in 0..3 {
                let r = st[p]["relu"];
                assert_eq!(r.rounds, 10, "ReLU rounds do not depend on the size");
                assert_eq!(r.bytes, want[p], "party {p}, n = {n}");
            }
        }
    }
}

#[test]
fn a2b_reconstructs_every_bit_and_costs_match() {
    for s in common::sessions(11) {
        for n in [1usize, 64, 1000] {
            let v = edge_values(n);
            let x = s.share_f64(&v, vec![n], 1).unwrap();
            s.reset_stats().unwrap();
            let words = s.a2b_reveal(&x).unwrap();
            let want = cryptgpu_engine::ring::encode(&v, 16).unwrap();
            assert_eq!(words, want);
            let st = s.stats().unwrap();
            let nw = n.div_ceil(64) as u64;
            // 8 conversion rounds + 1 to open. ANDs: 64 planes for g, then per
            // level 64 - s (G) + max(0, 64 - 2s) (P) for s = 1, 2, ..., 32.
            let ands = 64
                + (0..6)
                    .map(|i| (64 - (1 << i)) + 64u64.saturating_sub(2 << i))
                    .sum::<u64>();
            assert_eq!(ands, 643);
            for (p, party) in st.iter().enumerate() {
                let r = party["a2b"];
                assert_eq!(r.rounds, 9);
                let input = if p == 0 { 64 * nw } else { 0 };
                assert_eq!(r.bytes, 8 * (input + ands * nw + 64 * nw), "party {p}");
            }
        }
    }
}
