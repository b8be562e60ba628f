//! Socket identities of the ZeroMQ links: a party's plain identity, and on
//! encrypted links the identity with the minute and a tag that proves its
//! key (noise::identity_tag), checked by the neighbour's frame guard before
//! the connection may hold a slot for good.

use crate::net::noise::{self, LinkKeys};

pub(crate) fn identity(rank: usize) -> Vec<u8> {
    format!("cryptgpu-party-{rank}").into_bytes()
}

/// How far (in minutes) the clocks of two hosts may disagree for a proved
/// identity to be accepted; also how long a recorded one can be replayed.
pub(crate) const TAG_SKEW_MINUTES: u64 = 5;

pub(crate) fn minute_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

/// The socket identity of party `rank`'s connection to party `to`: on
/// encrypted links the plain identity, the minute and a tag proving the
/// key (noise::identity_tag), which `to`'s frame guard checks so that this
/// connection is never cut to make room for strangers; otherwise the plain
/// identity (nothing can be proved).
pub(crate) fn identity_to(rank: usize, to: usize, keys: Option<&LinkKeys>) -> Vec<u8> {
    let minute = minute_now();
    match keys.and_then(|k| noise::identity_tag(k, rank, rank, to, minute)) {
        Some(tag) => format!("cryptgpu-party-{rank}/{minute}/{}", noise::hex(&tag)).into_bytes(),
        None => identity(rank),
    }
}

/// Party `me`'s check of an identity claimed on its port: the claimed
/// party's plain identity if the tag in it is right for a neighbour, the
/// minute within the allowed skew of ours.
pub(crate) fn verify_identity(keys: &LinkKeys, me: usize, id: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(id).ok()?;
    let mut parts = text.strip_prefix("cryptgpu-party-")?.split('/');
    let (r, minute, tag) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || r.len() != 1 || tag.len() != 32 {
        return None;
    }
    let from: usize = r.parse().ok()?;
    let minute: u64 = minute.parse().ok()?;
    if from > 2 || from == me || minute_now().abs_diff(minute) > TAG_SKEW_MINUTES {
        return None;
    }
    let want = noise::hex(&noise::identity_tag(keys, me, from, me, minute)?);
    // Compared without an early exit, so timing does not tell how much of a
    // guessed tag was right.
    let diff = want
        .bytes()
        .zip(tag.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    (diff == 0).then(|| identity(from))
}

/// The party a ROUTER peer identity proves: the frame guard rewrites the
/// identity of a connection whose tag checked out to
/// `cryptgpu-party-<rank>#<n>`; a stranger's starts with `~`, or is one
/// ZeroMQ drew (starting with a zero byte).
pub(crate) fn proved_rank(id: &[u8]) -> Option<usize> {
    match id.strip_prefix(b"cryptgpu-party-")? {
        [r @ b'0'..=b'2', b'#', ..] => Some(usize::from(r - b'0')),
        _ => None,
    }
}
