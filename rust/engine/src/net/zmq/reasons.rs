//! Why a wait for a neighbour ended without its message: its link closed
//! or the timeout ran out, said with what the party heard before (a
//! refusal on the neighbour's connection, a frame the guard cut, a party
//! connecting without keys).

use super::{mode_mismatch, ZmqTransport, HANDSHAKE, REFUSAL_TEXT};
use crate::error::EngineError;
use crate::net::guard::oversized_reason;
use crate::net::noise;
use std::sync::atomic::Ordering;

/// A neighbour's reason for giving up its handshakes as it is shown: it
/// authenticates nothing (its connection proved at most an identity tag,
/// which a recording replays), so printable characters only, at most
/// `REFUSAL_TEXT`.
pub(super) fn refusal_text(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(REFUSAL_TEXT)
        .collect();
    if text.is_empty() {
        "no reason given".into()
    } else {
        text
    }
}

impl ZmqTransport {
    /// The error for a wait on `who` whose connections to this party all
    /// closed.
    pub(super) fn closed_error(&self, who: usize) -> EngineError {
        let rank = self.rank;
        if let Some(text) = &self.refusal[who] {
            return EngineError::Peer(format!(
                "party {rank}: party {who} closed its link after a message on its connection \
                 said it gave up its handshakes (not authenticated: {text})"
            ));
        }
        let cut = self
            .guard
            .as_ref()
            .map_or(0, |g| g.stats.proved_oversized.load(Ordering::Relaxed));
        let why = if cut > 0 {
            oversized_reason(self.guard.as_ref().map_or(0, |g| g.max_frame()))
        } else {
            "the process exited or the connection broke".to_string()
        };
        EngineError::Peer(format!("party {rank}: party {who} closed its link ({why})"))
    }

    /// The error for a wait on `who` that ran out.
    pub(super) fn timeout_error(&self, who: usize) -> EngineError {
        let rank = self.rank;
        if let Some(r) =
            (0..3).find(|&r| !self.encrypted && self.pending[r].iter().any(|m| m.0 == HANDSHAKE))
        {
            return mode_mismatch(rank, r);
        }
        if self.plain[who] > 0 {
            return EngineError::Peer(format!(
                "party {rank} got no answer from party {who} within the timeout; party {who} \
                 connected without a key (its socket identity carried no key's tag): it seems \
                 to run without encryption (CRYPTGPU_INSECURE=1) while this party encrypts its \
                 links: all parties must agree"
            ));
        }
        if let Some(text) = &self.refusal[who] {
            return EngineError::Peer(format!(
                "party {rank} got no answer from party {who} within the timeout; a message on \
                 its connection said it gave up its handshakes (not authenticated: {text})"
            ));
        }
        if self.unproved[who] > 0 {
            return noise::refused(
                rank,
                who,
                &format!(
                    "no answer within the timeout; {} message(s) claiming party {who} came on a \
                     connection that did not prove its key, which a wrong key on either side, \
                     or a stranger posing as it, would send",
                    self.unproved[who]
                ),
            );
        }
        // nothing heard at all: the usual causes, named (a party whose
        // CRYPTGPU_PEERS list had another order saw only this, a probe)
        EngineError::Peer(format!(
            "party {rank} got no answer from party {who} within the timeout (party {who} is \
             not running or is stuck, cannot reach this party's address, or the parties' \
             CRYPTGPU_PEERS lists differ in order)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At the default limit (the largest message the protocol sends) or
    /// above, an oversized frame is corruption or tampering; only a limit
    /// set smaller is blamed (a user probe's flipped length bit was).
    #[test]
    fn an_oversized_frame_blames_the_limit_only_when_it_was_set_smaller() {
        let largest = crate::net::tcp::largest_message();
        let at_default = oversized_reason(largest);
        assert!(at_default.contains("corrupted or tampered"), "{at_default}");
        assert!(!at_default.contains("too small"), "{at_default}");
        assert!(oversized_reason(u64::MAX).contains("corrupted or tampered"));
        let small = oversized_reason(largest - 1);
        assert!(
            small.contains("CRYPTGPU_MAX_FRAME_BYTES is too small"),
            "{small}"
        );
    }

    #[test]
    fn a_refusal_is_shown_printable_and_short() {
        assert_eq!(refusal_text(b""), "no reason given");
        assert_eq!(refusal_text(b"ok \x1b[31mred\x1b[0m\n"), "ok [31mred[0m");
        assert_eq!(refusal_text(&[b'x'; 1000]).len(), REFUSAL_TEXT);
    }
}
