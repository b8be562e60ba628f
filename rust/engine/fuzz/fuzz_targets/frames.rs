//! Frame decoding from the network: the TCP transport's frame reader, the
//! ZeroMQ guard's frame-length checker and re-framing (with the stream
//! split at a fuzzer-chosen point) and its READY identity parser. None may
//! panic; the reader may not reserve more than the bytes it is given
//! justify; what the guard forwards does not depend on the split.
#![no_main]

use cryptgpu_engine::net::{guard, tcp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = std::io::Cursor::new(data);
    while (r.position() as usize) < data.len() {
        if tcp::read_frame(&mut r).is_err() {
            break;
        }
    }
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (a, b) = data.split_at(cut);
    let max = 1 << 20;
    let whole = guard::stream_within_limit([data], max);
    assert_eq!(
        whole,
        guard::stream_within_limit([a, b], max),
        "split changed the verdict"
    );
    let forwarded = guard::forwarded([data], max);
    assert_eq!(forwarded.is_some(), whole);
    assert_eq!(
        forwarded,
        guard::forwarded([a, b], max),
        "split changed what is forwarded"
    );
    let claimed = guard::identity_of_head(data);
    // A rewritten identity (the guard rewrites a non-empty one) reads back
    // as written, or the head is refused.
    let rewritten = guard::with_identity(data, b"cryptgpu-party-0#1");
    if let (Some(id), Some(out)) = (claimed.filter(|i| !i.is_empty()), rewritten) {
        let _ = id;
        assert_eq!(
            guard::identity_of_head(&out).as_deref(),
            Some(&b"cryptgpu-party-0#1"[..])
        );
    }
});
