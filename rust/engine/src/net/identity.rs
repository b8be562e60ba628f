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
    let (from, minute, nonce, tag) = parse_identity(id, me)?;
    if minute_now().abs_diff(minute) > TAG_SKEW_MINUTES {
        return None;
    }
    let want = noise::identity_tag(keys, me, from, me, minute, nonce.as_bytes())?;
    (same_tag(&want, tag) && take_once(tag, minute)).then(|| identity(from))
}

/// A proved identity's parts, claimed by a neighbour of `me`: the rank,
/// the minute, the nonce and the tag (hex). None when malformed.
fn parse_identity(id: &[u8], me: usize) -> Option<(usize, u64, &str, &str)> {
    let text = std::str::from_utf8(id).ok()?;
    let mut parts = text.strip_prefix("cryptgpu-party-")?.split('/');
    let (r, minute, nonce, tag) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || r.len() != 1 || tag.len() != 32 || nonce.len() != 2 * NONCE {
        return None;
    }
    let from: usize = r.parse().ok()?;
    let minute: u64 = minute.parse().ok()?;
    (from <= 2 && from != me).then_some((from, minute, nonce, tag))
}

/// Whether `tag` (hex) is `want`, compared without an early exit, so that
/// timing does not tell how much of a guessed tag was right.
fn same_tag(want: &[u8; 16], tag: &str) -> bool {
    let want = noise::hex(want);
    let diff = want
        .bytes()
        .zip(tag.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    diff == 0 && want.len() == tag.len()
}

/// Why a neighbour's identity did not prove its key, as far as the tag
/// tells: for the wording of an error only (nothing is let in on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unproved {
    /// The tag is right for the claimed party's key, but its minute is
    /// `ahead` minutes from this host's clock (negative: behind), beyond
    /// `TAG_SKEW_MINUTES`: the two hosts' clocks differ (or, behind, a
    /// recording over 5 minutes old is replayed).
    Clock { ahead: i64 },
    /// The tag is right under the key this party's public-key list gives
    /// for party `listed`, not for the claimed party: the lists name the
    /// keys in another order (this party's, most likely).
    ListedAs(usize),
    /// The tag is right under no key this party holds: its public key for
    /// the claimed party, or the claimed party's for it, is wrong (a
    /// stale list, keys of another `cryptgpu.keys` run), or a stranger
    /// made it, or the connection was meant for another party (peer lists
    /// in another order).
    NoKey,
}

/// Party `me`'s reading of a well-formed identity claimed on its port that
/// `verify_identity` did not take: the claimed rank and why (None when it
/// is malformed, or proves the claimed key within the skew: a replay).
/// Costs one or two tag computations per neighbour key.
pub(crate) fn why_unproved(keys: &LinkKeys, me: usize, id: &[u8]) -> Option<(usize, Unproved)> {
    let (from, minute, nonce, tag) = parse_identity(id, me)?;
    let under = |k: usize| {
        noise::identity_tag_under(keys, &keys.publics[k], from, me, minute, nonce.as_bytes())
            .is_some_and(|want| same_tag(&want, tag))
    };
    if under(from) {
        let now = minute_now();
        let apart = |a: u64, b: u64| i64::try_from(a - b).unwrap_or(i64::MAX);
        let ahead = if minute >= now {
            apart(minute, now)
        } else {
            -apart(now, minute)
        };
        let clock = Unproved::Clock { ahead };
        return (ahead.unsigned_abs() > TAG_SKEW_MINUTES).then_some((from, clock));
    }
    let why = match (0..3).find(|&k| k != me && k != from && under(k)) {
        Some(k) => Unproved::ListedAs(k),
        None => Unproved::NoKey,
    };
    Some((from, why))
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
