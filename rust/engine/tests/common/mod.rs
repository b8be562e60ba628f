//! Shared by the engine's integration tests: the devices this machine has,
//! so one test body runs on each (the CPU always; CUDA where a GPU and its
//! driver are found).

use cryptgpu_engine::device::{cuda, DeviceKind};
use cryptgpu_engine::runtime::{Config, Session};

pub fn devices() -> Vec<DeviceKind> {
    let mut d = vec![DeviceKind::Cpu];
    if cuda::device_count() > 0 {
        d.push(DeviceKind::Cuda);
    }
    d
}

/// A seeded local session on each device present.
pub fn sessions(seed: u64) -> impl Iterator<Item = Session> {
    devices().into_iter().map(move |device| {
        Session::new(Config {
            seed: Some(seed),
            device,
            ..Config::default()
        })
        .unwrap()
    })
}
