//! Shape and window checks on arbitrary sizes: conv2d and pooling geometry
//! and strided views. None may panic; whatever they accept must have sizes
//! that can be computed without overflow.
#![no_main]

use cryptgpu_engine::ring::shape::{
    checked_nonzero_product, conv_geom, pool_geom, view_fits, Window,
};
use libfuzzer_sys::fuzz_target;

fn word(data: &[u8], i: usize) -> usize {
    let mut b = [0u8; 8];
    for (k, slot) in b.iter_mut().enumerate() {
        *slot = data.get(i * 8 + k).copied().unwrap_or(0);
    }
    // Mostly small values, sometimes anything (the top byte selects).
    let v = u64::from_le_bytes(b);
    if b[7] & 0x80 == 0 {
        (v % 9) as usize
    } else {
        v as usize
    }
}

fuzz_target!(|data: &[u8]| {
    let w: Vec<usize> = (0..16).map(|i| word(data, i)).collect();
    let xs = [w[0], w[1], w[2], w[3]];
    let ws = [w[4], w[5], w[6], w[7]];
    if let Ok((g, out)) = conv_geom(
        &xs,
        &ws,
        (w[8], w[9]),
        (w[10], w[11]),
        (w[12], w[13]),
        w[14],
    ) {
        assert!(g.fits());
        assert!(checked_nonzero_product(&out).is_some());
        assert!(g.checked_cols("fuzz").is_ok());
    }
    let win = Window {
        kernel: (w[4], w[5]),
        stride: (w[8], w[9]),
        padding: (w[10], w[11]),
        dilation: (w[12], w[13]),
    };
    if let Ok(g) = pool_geom(&xs, &win) {
        assert!(g.fits());
        assert!(g.checked_cols("fuzz").is_ok());
    }
    let _ = view_fits(&xs[..w[15] % 5], w[14], &ws[..w[15] % 5], w[8]);
});
