//! Local (message-free) operations on one party's share, on its device:
//! linear maps of replicated shares and the placement of public values.

use super::AShare;
use crate::device::{Buf, Device, Op1, Op2};
use crate::error::Result;

pub fn add(dev: &dyn Device, x: &AShare, y: &AShare) -> Result<AShare> {
    Ok(AShare {
        a: dev.map2(Op2::Add, &x.a, &y.a)?,
        b: dev.map2(Op2::Add, &x.b, &y.b)?,
    })
}

pub fn sub(dev: &dyn Device, x: &AShare, y: &AShare) -> Result<AShare> {
    Ok(AShare {
        a: dev.map2(Op2::Sub, &x.a, &y.a)?,
        b: dev.map2(Op2::Sub, &x.b, &y.b)?,
    })
}

pub fn neg(dev: &dyn Device, x: &AShare) -> Result<AShare> {
    x.map(|v| dev.map1(Op1::Neg, v))
}

/// Add a public ring vector: it becomes part of component x_0, which party
/// 0 holds first and party 2 holds second.
pub fn add_public(dev: &dyn Device, rank: usize, x: &AShare, p: &Buf) -> Result<AShare> {
    Ok(match rank {
        0 => AShare {
            a: dev.map2(Op2::Add, &x.a, p)?,
            b: x.b.clone(),
        },
        2 => AShare {
            a: x.a.clone(),
            b: dev.map2(Op2::Add, &x.b, p)?,
        },
        _ => x.clone(),
    })
}

/// Add one public ring value to every element (in place on x_0's copies).
pub fn add_scalar(dev: &dyn Device, rank: usize, x: &AShare, c: u64) -> Result<AShare> {
    let mut y = x.clone();
    add_scalar_into(dev, rank, &mut y, c)?;
    Ok(y)
}

/// `add_scalar` on a sharing this party owns (no copy).
pub fn add_scalar_into(dev: &dyn Device, rank: usize, y: &mut AShare, c: u64) -> Result<()> {
    match rank {
        0 => dev.map1_into(Op1::AddScalar(c), &mut y.a),
        2 => dev.map1_into(Op1::AddScalar(c), &mut y.b),
        _ => Ok(()),
    }
}

/// Party `rank`'s share of public ring values: they form component x_0
/// (the placement `add_public` relies on too).
pub fn public(dev: &dyn Device, rank: usize, e: &[u64]) -> Result<AShare> {
    let n = e.len();
    Ok(match rank {
        0 => AShare {
            a: dev.upload(e.to_vec())?,
            b: dev.zeros(n)?,
        },
        1 => AShare {
            a: dev.zeros(n)?,
            b: dev.zeros(n)?,
        },
        _ => AShare {
            a: dev.zeros(n)?,
            b: dev.upload(e.to_vec())?,
        },
    })
}

/// Multiply by public ring integers (no truncation).
pub fn mul_public(dev: &dyn Device, x: &AShare, p: &Buf) -> Result<AShare> {
    Ok(AShare {
        a: dev.map2(Op2::Mul, &x.a, p)?,
        b: dev.map2(Op2::Mul, &x.b, p)?,
    })
}
