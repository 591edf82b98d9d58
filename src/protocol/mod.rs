//! Pure protocol code: bytes in, values out. No sockets, no threads, no clocks — so all of
//! it is unit-tested on byte literals (and is where fuzz targets belong).

pub mod api;
pub mod deflate;
pub mod http;
pub mod origin;
pub mod ws;
