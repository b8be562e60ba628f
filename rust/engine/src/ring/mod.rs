//! The ring Z_2^64 (DESIGN.md layer 1): wrapping u64 arithmetic, fixed-point
//! encoding, and the public geometry of shapes and windows.

pub mod fixed;
pub mod shape;

pub use fixed::{decode, encode, encode_one, max_abs, scale};
pub use shape::{numel, strides, Conv2dGeom, Window};

/// Signed floor division by a positive public divisor, the local step of the
/// ABY3 share truncation (a right shift by f when d = 2^f).
pub fn div_floor(a: &mut [u64], d: u64) {
    let d = d as i64;
    if d > 0 && (d & (d - 1)) == 0 {
        let s = d.trailing_zeros();
        a.iter_mut().for_each(|x| *x = ((*x as i64) >> s) as u64);
    } else {
        a.iter_mut()
            .for_each(|x| *x = (*x as i64).div_euclid(d) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_roundtrip() {
        let v = [0.0, 1.5, -2.25, 1e6, -1e-5];
        let e = encode(&v, 16).unwrap();
        let d = decode(&e, 16);
        for (a, b) in v.iter().zip(d) {
            assert!((a - b).abs() <= 0.5 / 65536.0);
        }
    }

    #[test]
    fn encode_rejects_bad_values() {
        assert!(encode_one(f64::NAN, 16).is_err());
        assert!(encode_one(f64::INFINITY, 16).is_err());
        assert!(encode_one(2f64.powi(31), 16).is_err());
        assert!(encode_one(-(2f64.powi(31)), 16).is_err());
        assert!(encode_one(2f64.powi(30), 16).is_ok());
    }

    #[test]
    fn div_floor_is_signed_floor() {
        let mut a = vec![(-5i64) as u64, 5, 7, (-8i64) as u64];
        div_floor(&mut a, 4);
        assert_eq!(a, vec![(-2i64) as u64, 1, 1, (-2i64) as u64]);
        let mut b = vec![(-7i64) as u64, 7];
        div_floor(&mut b, 3);
        assert_eq!(b, vec![(-3i64) as u64, 2]);
    }
}
