//! Socket identities of the ZeroMQ links: a party's plain identity, and on
//! encrypted links the identity with the minute, a nonce and a tag that
//! proves its key (noise::identity_tag), checked by the neighbour's frame
//! guard before the connection may hold a slot for good; each identity is
//! taken once per process.

use crate::net::noise::{self, LinkKeys};

pub(crate) fn identity(rank: usize) -> Vec<u8> {
    format!("cryptgpu-party-{rank}").into_bytes()
}

/// How far (in minutes) the clocks of two hosts may disagree for a proved
/// identity to be accepted; also how long a recorded one can be replayed
/// to a process that has not seen it (a restarted job with the same keys).
pub(crate) const TAG_SKEW_MINUTES: u64 = 5;

pub(crate) fn minute_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

/// The socket identity of party `rank`'s connection to party `to`: on
/// encrypted links the plain identity, the minute, a fresh nonce and a
/// tag over them proving the key (noise::identity_tag), which `to`'s frame
/// guard checks so that this connection is never cut to make room for
/// strangers; otherwise the plain identity (nothing can be proved). Each
/// connection gets a nonce of its own, so that the guard can take each
/// identity once (`verify_identity`).
pub(crate) fn identity_to(rank: usize, to: usize, keys: Option<&LinkKeys>) -> Vec<u8> {
    let minute = minute_now();
    let mut nonce = [0u8; NONCE];
    let nonce = keys
        .filter(|_| getrandom::getrandom(&mut nonce).is_ok())
        .map(|_| noise::hex(&nonce))
        .unwrap_or_default();
    let proved =
        keys.and_then(|k| noise::identity_tag(k, rank, rank, to, minute, nonce.as_bytes()));
    match proved {
        Some(tag) if !nonce.is_empty() => format!(
            "cryptgpu-party-{rank}/{minute}/{nonce}/{}",
            noise::hex(&tag)
        )
        .into_bytes(),
        _ => identity(rank),
    }
}

/// Bytes of an identity's nonce.
const NONCE: usize = 8;

/// The tags of the identities this process took (`verify_identity`), with
/// their minutes: an identity proves a key once, so a recording of one
/// replayed to this process (in a later session, a second `init()`, while
/// its minute is good) is a stranger's. Only identities that prove a key
/// are kept (made by a key holder: a party's connections), each while its
/// minute is within the skew.
static TAKEN: std::sync::Mutex<Vec<(String, u64)>> = std::sync::Mutex::new(Vec::new());

/// Take `tag` (of `minute`): false when it was taken before.
fn take_once(tag: &str, minute: u64) -> bool {
    let Ok(mut taken) = TAKEN.lock() else {
        return false;
    };
    let now = minute_now();
    taken.retain(|(_, m)| now.abs_diff(*m) <= TAG_SKEW_MINUTES);
    if taken.iter().any(|(t, _)| t == tag) {
        return false;
    }
    taken.push((tag.to_string(), minute));
    true
}

/// Party `me`'s check of an identity claimed on its port: the claimed
/// party's plain identity if the tag in it is right for a neighbour, the
/// minute within the allowed skew of ours, and this process has not taken
/// it before (a replay).
pub(crate) fn verify_identity(keys: &LinkKeys, me: usize, id: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(id).ok()?;
    let mut parts = text.strip_prefix("cryptgpu-party-")?.split('/');
    let (r, minute, nonce, tag) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || r.len() != 1 || tag.len() != 32 || nonce.len() != 2 * NONCE {
        return None;
    }
    let from: usize = r.parse().ok()?;
    let minute: u64 = minute.parse().ok()?;
    if from > 2 || from == me || minute_now().abs_diff(minute) > TAG_SKEW_MINUTES {
        return None;
    }
    let want = noise::hex(&noise::identity_tag(
        keys,
        me,
        from,
        me,
        minute,
        nonce.as_bytes(),
    )?);
    // Compared without an early exit, so timing does not tell how much of a
    // guessed tag was right.
    let diff = want
        .bytes()
        .zip(tag.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    (diff == 0 && take_once(tag, minute)).then(|| identity(from))
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
