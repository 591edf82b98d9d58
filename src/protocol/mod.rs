//! Pure protocol code: bytes in, values out. No sockets, no threads, no clocks — so all of
//! it is unit-tested on byte literals (and is where fuzz targets belong). It names no module
//! above it (`tests/layers.rs` keeps it so).

pub mod api;
pub mod assets;
pub mod codec;
pub mod deflate;
pub mod http;
pub mod origin;
pub mod relay;
pub mod ws;

/// For the parsers' fuzz tests: on even `i`, up to `max_random` random bytes; otherwise
/// `valid` with one to three bytes changed, cut at a random point.
#[cfg(test)]
pub(crate) fn fuzz_input(rng: &mut fastrand::Rng, i: usize, valid: &[u8], max_random: usize) -> Vec<u8> {
    if i.is_multiple_of(2) {
        return (0..rng.usize(0..max_random)).map(|_| rng.u8(..)).collect();
    }
    let mut v = valid.to_vec();
    for _ in 0..rng.usize(1..4) {
        let at = rng.usize(..v.len());
        v[at] = rng.u8(..);
    }
    v.truncate(rng.usize(..=v.len()));
    v
}
