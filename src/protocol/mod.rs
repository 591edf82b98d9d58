//! Pure protocol code: bytes in, values out. No sockets, no threads, no clocks — so all of
//! it is unit-tested on byte literals (and is where fuzz targets belong).

pub mod api;
pub mod http;
pub mod ws;

/// `n` in decimal, written into `buf` without allocating; returns the digits.
pub fn decimal(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut m = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimal_matches_to_string() {
        for n in [0, 7, 10, 200, 1001, -1, -1001, 65535, i64::MAX, i64::MIN] {
            assert_eq!(super::decimal(n, &mut [0; 20]), n.to_string().as_bytes(), "{n}");
        }
    }
}
