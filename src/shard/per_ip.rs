//! Per source address bounds (`max_connections_per_ip`, `handshakes_per_ip_per_second`; both
//! off by default — mobile carriers put thousands of users behind one address). The counts are
//! shared by the shards (an address's connections land on any shard, and a resumed socket
//! moves between shards), under one mutex taken at accept, at a WebSocket handshake and when
//! a socket is released — never per message — and only when a bound is set.
//!
//! A socket is known by its file descriptor, which is unique among open sockets: every path
//! that lets a socket go calls [`PerIp::release`] while it is still open (through
//! `Shared::socket_gone`), so a number reused by a later accept is never mistaken for it. An
//! address is forgotten when its last socket goes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Default)]
struct Use {
    conns: u32,
    /// The second the handshake count is for, and the count.
    second: u64,
    handshakes: u32,
}

#[derive(Default)]
struct Maps {
    by_ip: HashMap<IpAddr, Use>,
    by_fd: HashMap<RawFd, IpAddr>,
    /// The second addresses without sockets were last pruned.
    pruned: u64,
}

impl Maps {
    /// An address with no socket left is forgotten — unless it made handshakes this second or
    /// the last (opening and closing connections must not reset its rate); those go in the
    /// once-a-second prune.
    fn forget_if_idle(&mut self, ip: IpAddr, now_sec: Option<u64>) {
        let Some(u) = self.by_ip.get(&ip) else { return };
        if u.conns == 0 && now_sec.is_none_or(|now| u.second + 1 < now) {
            self.by_ip.remove(&ip);
        }
    }
}

/// The shared per-address counts.
pub struct PerIp {
    max_conns: usize,
    max_rate: usize,
    /// Handshake seconds count from here (one clock for all shards).
    epoch: Instant,
    maps: Mutex<Maps>,
}

impl PerIp {
    /// `None` when both bounds are off.
    pub fn new(max_conns: usize, max_rate: usize) -> Option<PerIp> {
        (max_conns > 0 || max_rate > 0).then(|| PerIp {
            max_conns,
            max_rate,
            epoch: Instant::now(),
            maps: Mutex::default(),
        })
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        // A panic while holding the lock leaves consistent maps (no multi-step update).
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new socket `fd` from `ip`: counted, or `false` if the address has its maximum.
    pub fn admit(&self, fd: RawFd, ip: IpAddr) -> bool {
        let mut m = self.maps();
        let u = m.by_ip.entry(ip).or_default();
        if self.max_conns > 0 && u.conns as usize >= self.max_conns {
            return false;
        }
        u.conns += 1;
        m.by_fd.insert(fd, ip);
        true
    }

    /// Socket `fd` is going (call before it is closed). Unknown numbers are ignored.
    pub fn release(&self, fd: RawFd) {
        self.release_in(fd, self.second())
    }

    fn release_in(&self, fd: RawFd, now_sec: u64) {
        let mut m = self.maps();
        let Some(ip) = m.by_fd.remove(&fd) else { return };
        if let Some(u) = m.by_ip.get_mut(&ip) {
            u.conns = u.conns.saturating_sub(1);
        }
        m.forget_if_idle(ip, (self.max_rate > 0).then_some(now_sec));
    }

    fn second(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    /// A WebSocket handshake on socket `fd` now: allowed, or `false` when its address is
    /// past the rate.
    pub fn handshake(&self, fd: RawFd) -> bool {
        self.handshake_in(fd, self.second())
    }

    fn handshake_in(&self, fd: RawFd, now_sec: u64) -> bool {
        if self.max_rate == 0 {
            return true;
        }
        let mut m = self.maps();
        if m.pruned != now_sec {
            m.pruned = now_sec;
            m.by_ip.retain(|_, u| u.conns > 0 || u.second + 1 >= now_sec);
        }
        let Some(&ip) = m.by_fd.get(&fd) else { return true };
        let Some(u) = m.by_ip.get_mut(&ip) else { return true };
        if u.second != now_sec {
            u.second = now_sec;
            u.handshakes = 0;
        }
        u.handshakes = u.handshakes.saturating_add(1);
        u.handshakes as usize <= self.max_rate
    }

    /// Addresses with open sockets.
    pub fn addresses(&self) -> usize {
        self.maps().by_ip.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_and_handshakes_per_address() {
        assert!(PerIp::new(0, 0).is_none());
        let p = PerIp::new(2, 3).unwrap();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(p.admit(10, a) && p.admit(11, a));
        assert!(!p.admit(12, a), "third from one address");
        assert!(p.admit(12, b));
        p.release_in(10, 7);
        assert!(p.admit(10, a));
        assert!((0..3).all(|_| p.handshake_in(11, 7)));
        assert!(!p.handshake_in(10, 7), "fourth in one second, any socket of the address");
        assert!(p.handshake_in(12, 7), "another address");
        assert!(p.handshake_in(11, 8), "a new second");
        p.release_in(99, 8);
        p.release_in(10, 8);
        p.release_in(11, 8);
        p.release_in(11, 8);
        assert_eq!(p.addresses(), 2, "a's handshakes are recent: kept without sockets");
        assert!(p.admit(13, a));
        assert!(p.handshake_in(13, 8) && p.handshake_in(13, 8), "closing did not reset the rate");
        assert!(!p.handshake_in(13, 8));
        p.release_in(13, 8);
        p.release_in(12, 9);
        assert_eq!(p.addresses(), 1, "b's handshake is two seconds old: forgotten with its last socket");
        assert!(p.handshake_in(77, 10), "unknown socket");
        assert_eq!(p.addresses(), 0, "pruned once the seconds passed");
    }

    #[test]
    fn without_a_rate_an_address_goes_with_its_last_socket() {
        let p = PerIp::new(1, 0).unwrap();
        let a: IpAddr = "::1".parse().unwrap();
        assert!(p.admit(3, a) && !p.admit(4, a));
        assert!(p.handshake_in(3, 0));
        p.release_in(3, 0);
        assert_eq!(p.addresses(), 0);
    }
}
