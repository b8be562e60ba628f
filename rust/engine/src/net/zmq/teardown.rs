//! The end of a ZeroMQ session: neighbours' connections watched, BYE
//! exchanged (sealed on encrypted links).

use super::{idx, ZmqTransport, BYE, BYE_TEXT, FRAME};
use crate::net::identity::identity;
use crate::net::{noise, Peer};
use std::time::{Duration, Instant};

impl ZmqTransport {
    /// Record neighbours whose connection to our ROUTER socket closed (or came
    /// back).
    pub(super) fn watch_connections(&mut self) {
        let Some(mon) = self.monitor.as_mut() else {
            return;
        };
        while let Ok(ev) = mon.try_recv() {
            let (id, up) = match &ev {
                zeromq::SocketEvent::Disconnected(id) => (id.to_vec(), false),
                zeromq::SocketEvent::Accepted(_, id) => (id.to_vec(), true),
                _ => continue,
            };
            // The guard tags each connection's identity with `#n`: several
            // connections may name one party, and the party is gone only
            // when none of them is left. On encrypted links only a
            // connection that proved the party's key names it (the guard
            // marks other claims with `~`), so a stranger's claim cannot
            // hide a neighbour's departure; unencrypted, any claim counts.
            let claim = id.split(|&b| b == b'#').next().unwrap_or(&[]);
            // on encrypted links, a party's plain identity (no key's tag) is
            // what a party without keys connects with
            if let Some(r) = (0..3).find(|&r| {
                up && self.encrypted && claim.strip_prefix(b"~") == Some(&identity(r)[..])
            }) {
                self.plain[r] += 1;
            }
            if let Some(r) = (0..3).find(|&r| identity(r) == claim) {
                if up {
                    self.links[r] += 1;
                    self.gone[r] = None;
                } else {
                    self.links[r] = self.links[r].saturating_sub(1);
                    if self.links[r] == 0 {
                        self.gone[r] = Some(Instant::now());
                    }
                }
            }
        }
    }

    /// Say BYE to both neighbours and wait (at most `grace`) for theirs. On
    /// encrypted links the BYE is sealed, so a neighbour still waiting for
    /// this party's message can trust it and stop at once (a stranger's
    /// BYE would not open). Protocol messages a neighbour sent that this
    /// party never read mean the two ran different programs: said on
    /// stderr (the session is ending; there is no call left to fail).
    pub(super) fn goodbye(&mut self, grace: Duration) {
        for peer in [Peer::Next, Peer::Prev] {
            let body = match self.noise[idx(peer)].as_mut() {
                Some(st) => noise::seal(st, BYE_TEXT).unwrap_or_default(),
                None => Vec::new(),
            };
            let _ = self.post(peer, BYE, &body);
        }
        let deadline = Instant::now() + grace;
        for peer in [Peer::Next, Peer::Prev] {
            let who = peer.rank(self.rank);
            let mut unread = 0usize;
            loop {
                match self.take(who, deadline) {
                    Ok((BYE, _)) | Err(_) => break,
                    Ok((FRAME, _)) => unread += 1,
                    Ok(_) => continue,
                }
            }
            if unread > 0 {
                eprintln!(
                    "cryptgpu: party {}: party {who} sent {unread} protocol message(s) this \
                     party never read: the parties ran different programs",
                    self.rank
                );
            }
        }
    }

    /// Whether a BYE's body is genuine: sealed by the neighbour on
    /// encrypted links (opened with its receive key), anything unencrypted.
    pub(super) fn genuine_bye(&mut self, from: Peer, body: &[u8]) -> bool {
        match self.noise[idx(from)].as_mut() {
            None => true,
            Some(st) => !body.is_empty() && noise::open(st, body).is_ok_and(|b| b == BYE_TEXT),
        }
    }
}
