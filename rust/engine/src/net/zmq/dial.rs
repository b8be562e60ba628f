//! Dialling a neighbour: a DEALER socket connected in attempts that grow
//! on a slow link.

use super::ZmqTransport;
use crate::error::{EngineError, Result};
use crate::net::identity::identity_to;
use crate::net::noise::LinkKeys;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use zeromq::{DealerSocket, Socket, SocketOptions};

/// How long a first connection attempt to a peer may take before `dial`
/// starts another (its own 50 ms loop does the retrying). An attempt that
/// runs out while the peer's port does not refuse connections (a slow
/// link: the ZMTP greeting and READY take about two round trips) doubles
/// the next one's, up to what is left of the timeout: with a fixed 1 s,
/// links with a round trip of 0.9 s or more never came up, whatever the
/// timeout (a user probe).
pub(super) const CONNECT_ATTEMPT: Duration = Duration::from_secs(1);
/// `took`, the time a connection took, when it is a slow link's: longer
/// than a fast link's first attempt may take (so its attempts had to grow).
pub(super) fn slow(took: Duration) -> Option<Duration> {
    (took > CONNECT_ATTEMPT).then_some(took)
}

/// How often a connection attempt looks for Ctrl-C.
const CONNECT_POLL: Duration = Duration::from_millis(100);
/// How long `dial` waits to learn whether a port refuses connections.
const REFUSE_PROBE: Duration = Duration::from_secs(1);

impl ZmqTransport {
    /// A DEALER socket connected to party `who` at `addr`, retried until
    /// `deadline`, and how long its successful attempt took: a neighbour's
    /// guard may cut or refuse a connection that is still in its ZMTP
    /// handshake while strangers crowd its slots (it cannot tell them
    /// apart before the handshake's READY), and ZeroMQ does not redial a
    /// DEALER by itself. Once connected, the connection has proved its key
    /// (encrypted links) or passed its handshake, and the guard keeps it.
    /// The first attempt may take `first` (at least `CONNECT_ATTEMPT`);
    /// one that runs out while the port does not refuse connections
    /// doubles the next one's.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dial(
        rt: &tokio::runtime::Runtime,
        rank: usize,
        who: usize,
        addr: SocketAddr,
        keys: Option<&LinkKeys>,
        deadline: Instant,
        timeout: Duration,
        first: Duration,
    ) -> Result<(DealerSocket, Duration)> {
        let mut cap = first.max(CONNECT_ATTEMPT);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut opts = SocketOptions::default();
            // Attempts of their own length, retried by this loop: inside one
            // attempt the zeromq crate backs off by doubling delays (up to
            // 30 s) while the port refuses, so a party that came up 26-51 s
            // late waited up to 25 s more, and one 51-60 s late was never
            // reached within a 60 s timeout. An attempt grows only while
            // the port does not refuse (below), so that back-off stays short.
            let attempt = left.clamp(Duration::from_millis(1), cap);
            opts.connect_timeout(attempt);
            let id = zeromq::util::PeerIdentity::try_from(identity_to(rank, who, keys))
                .map_err(|e| EngineError::Internal(format!("peer identity: {e}")))?;
            opts.peer_identity(id);
            let mut s = DealerSocket::with_options(opts);
            let started = Instant::now();
            let url = format!("tcp://{addr}");
            let got = rt.block_on(async {
                let mut c = std::pin::pin!(s.connect(&url));
                loop {
                    match tokio::time::timeout(CONNECT_POLL, &mut c).await {
                        Ok(r) => break Some(r),
                        // a long attempt still answers Ctrl-C
                        Err(_) if crate::net::interrupted() => break None,
                        Err(_) => {}
                    }
                }
            });
            let err = match got {
                None => {
                    return Err(crate::net::interrupted_error(
                        rank,
                        &format!("dialling party {who}"),
                    ))
                }
                Some(Ok(_)) => return Ok((s, started.elapsed())),
                Some(Err(e)) => e,
            };
            // the attempt ran out with the port open: how long it had
            let mut open_but_silent: Option<Duration> = None;
            if matches!(err, zeromq::ZmqError::ConnectTimeout(_)) && attempt == cap {
                // the whole attempt ran out: on a port that refuses (a party
                // not up yet) the next stays short; otherwise (a slow link,
                // or a stuck party) it doubles
                let left = deadline.saturating_duration_since(Instant::now());
                let probe = left.min(REFUSE_PROBE);
                let refused = !probe.is_zero()
                    && matches!(
                        std::net::TcpStream::connect_timeout(&addr, probe),
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
                    );
                if !refused {
                    open_but_silent = Some(attempt);
                    cap = cap.saturating_mul(2);
                }
            }
            if Instant::now() + Duration::from_millis(50) >= deadline {
                let hint = match open_but_silent {
                    Some(a) => format!(
                        "its port accepts connections, but the ZeroMQ handshake did not end \
                         within the last attempt's {a:?}: a very slow link (raise timeout_s), \
                         a stuck party, or no cryptgpu ZeroMQ party at that address"
                    ),
                    None => format!(
                        "is party {who} running, with the same transport? a party with \
                         CRYPTGPU_TRANSPORT=tcp does not speak ZeroMQ"
                    ),
                };
                return Err(EngineError::Peer(format!(
                    "party {rank} could not reach party {who} at {addr} within {timeout:?} (the \
                     last attempt: {err}; {hint})"
                )));
            }
            if crate::net::interrupted() {
                return Err(crate::net::interrupted_error(
                    rank,
                    &format!("dialling party {who}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
