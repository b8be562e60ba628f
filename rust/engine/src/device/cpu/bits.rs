//! Bit slicing on the host: 64 ring elements become 64 words of one bit
//! plane each (a 64x64 bit-matrix transpose), the packing the binary
//! protocols compute on (protocol/binary.rs).

/// Transpose a 64x64 bit matrix in place: bit c of word r moves to bit r of
/// word c (recursive block swaps, 6 steps of 32 word pairs).
pub fn transpose64(a: &mut [u64; 64]) {
    let mut j = 32usize;
    let mut m: u64 = 0x0000_0000_FFFF_FFFF;
    while j != 0 {
        let mut k = 0usize;
        while k < 64 {
            // Swap the high j bits of word k (bits j..) with the low j bits
            // of word k + j.
            let t = ((a[k] >> j) ^ a[k + j]) & m;
            a[k] ^= t << j;
            a[k + j] ^= t;
            k = (k + j + 1) & !j;
        }
        j >>= 1;
        m ^= m << j;
    }
}

/// Bit-slice n words into 64 planes of nw words: plane j, word w, bit b =
/// bit j of element 64 w + b.
pub fn to_planes(x: &[u64]) -> Vec<u64> {
    let n = x.len();
    let nw = n.div_ceil(64);
    let mut out = vec![0u64; 64 * nw];
    for w in 0..nw {
        let mut blk = [0u64; 64];
        let hi = (n - w * 64).min(64);
        blk[..hi].copy_from_slice(&x[w * 64..w * 64 + hi]);
        transpose64(&mut blk);
        for (j, v) in blk.iter().enumerate() {
            out[j * nw + w] = *v;
        }
    }
    out
}

/// Inverse of `to_planes`: n words back from 64 planes of nw words.
pub fn from_planes(planes: &[u64], n: usize) -> Vec<u64> {
    let nw = n.div_ceil(64);
    let mut out = vec![0u64; n];
    for w in 0..nw {
        let mut blk = [0u64; 64];
        for (j, b) in blk.iter_mut().enumerate() {
            *b = planes[j * nw + w];
        }
        transpose64(&mut blk);
        let hi = (n - w * 64).min(64);
        out[w * 64..w * 64 + hi].copy_from_slice(&blk[..hi]);
    }
    out
}

/// Element e's bit from a packed plane, as 0 or 1.
#[inline]
pub fn bit(plane: &[u64], e: usize) -> u64 {
    (plane[e / 64] >> (e % 64)) & 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_planes_inverts_to_planes() {
        let x: Vec<u64> = (0..200u64)
            .map(|i| i.wrapping_mul(0xD6E8_FEB8_6659_FD93))
            .collect();
        assert_eq!(from_planes(&to_planes(&x), x.len()), x);
    }

    #[test]
    fn planes_hold_bit_j_of_each_element() {
        let x: Vec<u64> = (0..130u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let p = to_planes(&x);
        let nw = 3;
        for (e, v) in x.iter().enumerate() {
            for j in 0..64 {
                assert_eq!(
                    bit(&p[j * nw..(j + 1) * nw], e),
                    (v >> j) & 1,
                    "e {e} j {j}"
                );
            }
        }
    }
}
