//! The session's history digest: every operation of a session, local or
//! not, mixes its name, its shapes and arguments and its public constants
//! into one running 64-bit value, and the step tag of every message
//! carries 16 bits of it (`Comm::set_history`). Parties whose programs
//! differ only in a local step (a reshape, a flip, a transpose, a slice) or
//! in a public constant exchanged the same messages and opened garbage
//! without an error (a user probe: `x.flip(0) * x` on one party, `x * x` on
//! the others); they are now out of step at the next message.
//!
//! Only what every party of a correct program knows alike is noted: a
//! sharing's shape and `src`, never its values (only src reads them; the
//! others pass placeholders), a coin's bound, never the draw, a checkpoint's
//! shapes, never its shares. Public constants are noted as the ring words
//! the operation computes with (their fixed-point encoding), which is
//! exactly the granularity at which they must agree (one unit apart in a
//! party's copy of a public factor already opens garbage), while values
//! that differ by float noise below it (another libm's `exp`) almost
//! always agree (one on a rounding boundary differs by a unit: a
//! PeerError where it would have opened garbage).
//! A long public tensor is noted by a bounded sample (its length, the
//! first and last 64 words and 1024 words evenly spaced between), so a
//! note costs O(1) whatever the size.

use super::Session;
use crate::ring::Window;
use std::sync::atomic::Ordering;

/// Words of a long slice noted at each end, and evenly spaced between.
const ENDS: usize = 64;
const SPREAD: usize = 1024;

/// One operation's entry in the history digest, built from its name and
/// arguments and mixed in by [`Session::note`].
#[derive(Clone, Copy, Debug)]
#[must_use]
pub(crate) struct Note(u64);

impl Note {
    pub fn op(name: &str) -> Note {
        name.bytes()
            .fold(Note(0x243f_6a88_85a3_08d3), |n, b| n.word(u64::from(b)))
    }

    pub fn word(self, v: u64) -> Note {
        Note((self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95))
    }

    pub fn flag(self, b: bool) -> Note {
        self.word(u64::from(b))
    }

    /// A list of small numbers (a shape, dims, strides), with its length.
    pub fn dims(self, v: &[usize]) -> Note {
        v.iter()
            .fold(self.word(v.len() as u64), |n, &d| n.word(d as u64))
    }

    pub fn pair(self, p: (usize, usize)) -> Note {
        self.word(p.0 as u64).word(p.1 as u64)
    }

    pub fn win(self, w: &Window) -> Note {
        self.pair(w.kernel)
            .pair(w.stride)
            .pair(w.padding)
            .pair(w.dilation)
    }

    /// Ring words (encoded public values, positions): all of them up to
    /// 2 * 64 + 1024, else the bounded sample.
    pub fn words(self, v: &[u64]) -> Note {
        self.sample(v, |&w| w)
    }

    /// Positions (an index list), as `words` samples them.
    pub fn positions(self, v: &[usize]) -> Note {
        self.sample(v, |&i| i as u64)
    }

    fn sample<T>(self, v: &[T], w: impl Fn(&T) -> u64) -> Note {
        let n = v.len();
        let mut h = self.word(n as u64);
        if n <= 2 * ENDS + SPREAD {
            return v.iter().fold(h, |h, x| h.word(w(x)));
        }
        let step = (n - 2 * ENDS) / SPREAD;
        let picks = (0..ENDS)
            .chain((0..SPREAD).map(|i| ENDS + i * step))
            .chain(n - ENDS..n);
        for i in picks {
            h = h.word(w(&v[i]));
        }
        h
    }
}

impl Session {
    /// Mix one operation into the session's history digest (before it
    /// runs: its own first message already carries it).
    pub(crate) fn note(&self, n: Note) {
        let mix = |h: u64| Some(Note(h).word(n.0).0);
        let _ = self
            .history
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, mix);
    }

    /// The history digest so far (what the next message's tag carries).
    pub(crate) fn history(&self) -> u64 {
        self.history.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_tell_arguments_and_constants_apart() {
        let base = Note::op("gather").dims(&[4, 2]);
        assert_ne!(base.dims(&[2, 1]).0, base.dims(&[1, 2]).0);
        let enc = |p: f64| crate::ring::encode(&[p], 16).unwrap_or_default();
        let note = |p: f64| Note::op("mul").words(&enc(p)).0;
        assert_ne!(note(2.5), note(3.5));
        // float noise below the encoding's unit notes alike
        assert_eq!(note(0.1 + 0.2), note(0.3));
    }

    #[test]
    fn a_long_vector_is_sampled_at_its_ends_and_spread() {
        let v: Vec<u64> = (0..1_000_000).collect();
        let h = Note::op("p").words(&v).0;
        let mut end = v.clone();
        end[999_999] += 1;
        assert_ne!(h, Note::op("p").words(&end).0);
        let mut first = v.clone();
        first[3] += 1;
        assert_ne!(h, Note::op("p").words(&first).0);
        let mut short = v;
        short.pop();
        assert_ne!(h, Note::op("p").words(&short).0);
    }
}
