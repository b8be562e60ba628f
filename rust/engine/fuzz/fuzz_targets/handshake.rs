//! The Noise_KK handshake, answering a stranger: arbitrary bytes as the
//! initiator's first message (responder side) and as the responder's answer
//! (initiator side). Both must fail cleanly: an error, never a panic, and
//! never a transport state for bytes that were not made with the keys.
#![no_main]

use cryptgpu_engine::net::noise::{generate_keypair, handshake, LinkKeys};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn keys() -> &'static LinkKeys {
    static K: OnceLock<LinkKeys> = OnceLock::new();
    K.get_or_init(|| {
        let a = generate_keypair().expect("keys");
        let b = generate_keypair().expect("keys");
        let c = generate_keypair().expect("keys");
        LinkKeys {
            private: a.0,
            publics: [a.1, b.1, c.1],
            job: [0; 32],
        }
    })
}

fuzz_target!(|data: &[u8]| {
    for initiator in [false, true] {
        let r = handshake(keys(), 0, 1, initiator, |_| Ok(()), || Ok(data.to_vec()));
        assert!(r.is_err(), "a handshake completed with a stranger's bytes");
    }
});
