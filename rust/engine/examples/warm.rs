use cryptgpu_engine::runtime::{Config, Session};
use std::time::Instant;
fn main() {
    let t = Instant::now();
    let s = Session::new(Config::default()).unwrap();
    println!("init {:?}", t.elapsed());
    let v = vec![1.0; 65536];
    let t = Instant::now();
    let x = s.share_f64(&v, vec![65536], 0).unwrap();
    println!("share {:?}", t.elapsed());
    for _ in 0..3 {
        let t = Instant::now();
        s.mul(&x, &x).unwrap();
        println!("mul {:?}", t.elapsed());
    }
}
