//! Per source address bounds (`max_connections_per_ip`, `handshakes_per_ip_per_second`; both
//! off by default — mobile carriers put thousands of users behind one address). The counts are
//! shared by the shards (an address's connections land on any shard, and a resumed socket
//! moves between shards), under one mutex taken at accept, at a WebSocket handshake and when
//! a socket is released — never per message — and only when a bound is set.
//!
//! A socket is known by its file descriptor, which is unique among open sockets: every path
//! that lets a socket go calls [`PerIp::release`] while it is still open (through
//! `Shared::socket_gone`), or [`PerIp::detach`] when its session is kept for recovery, so a
//! number reused by a later accept is never mistaken for it. An address is forgotten when its
//! last socket and its last kept session go.
//!
//! A session kept for recovery (detached, no socket) still counts against its address until it
//! ends ([`PerIp::end_kept`]): a fresh session is refused once the address's sockets and kept
//! sessions reach the bound ([`PerIp::fresh_fits`]). A socket is accepted while the address's
//! *sockets* are under it, so a client coming back to resume its session is never refused for
//! holding that session.
//!
//! An IPv6 client is counted by its `/per_ip_ipv6_prefix` (default 64: one subscriber's
//! network, which holds 2^64 addresses); an IPv4-mapped address as the IPv4 one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Default)]
struct Use {
    conns: u32,
    /// Sessions of this address kept for recovery (no socket).
    kept: u32,
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
        if u.conns == 0 && u.kept == 0 && now_sec.is_none_or(|now| u.second + 1 < now) {
            self.by_ip.remove(&ip);
        }
    }
}

/// The shared per-address counts.
pub struct PerIp {
    max_conns: usize,
    max_rate: usize,
    /// IPv6 sources are counted by this prefix length.
    v6_prefix: u8,
    /// Handshake seconds count from here (one clock for all shards).
    epoch: Instant,
    maps: Mutex<Maps>,
}

impl PerIp {
    /// `None` when both bounds are off. `v6_prefix`: 1..=128.
    pub fn new(max_conns: usize, max_rate: usize, v6_prefix: u8) -> Option<PerIp> {
        assert!((1..=128).contains(&v6_prefix), "per_ip_ipv6_prefix is checked at start");
        (max_conns > 0 || max_rate > 0).then(|| PerIp {
            max_conns,
            max_rate,
            v6_prefix,
            epoch: Instant::now(),
            maps: Mutex::default(),
        })
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        // A panic while holding the lock leaves consistent maps (no multi-step update).
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key `ip` is counted under: itself (IPv4), its IPv4 form (IPv4-mapped), or its
    /// network of `v6_prefix` bits (IPv6).
    pub fn key(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(self.v6_prefix)).unwrap_or(0);
                    IpAddr::V6((u128::from(v6) & mask).into())
                }
            },
        }
    }

    /// A new socket `fd` from `ip`: counted, or `false` if the address has its maximum of
    /// sockets (kept sessions are not counted here: see the module docs).
    pub fn admit(&self, fd: RawFd, ip: IpAddr) -> bool {
        let ip = self.key(ip);
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

    /// Whether socket `fd` may start a fresh session: its address's sockets (this one
    /// included) and kept sessions are within `max_connections_per_ip`.
    pub fn fresh_fits(&self, fd: RawFd) -> bool {
        if self.max_conns == 0 {
            return true;
        }
        let m = self.maps();
        let Some(u) = m.by_fd.get(&fd).and_then(|ip| m.by_ip.get(ip)) else { return true };
        (u.conns + u.kept) as usize <= self.max_conns
    }

    /// Socket `fd` is going (call before it is closed) and its session is kept: the address
    /// keeps counting it; returns the address, for [`PerIp::end_kept`].
    pub fn detach(&self, fd: RawFd) -> Option<IpAddr> {
        let mut m = self.maps();
        let ip = m.by_fd.remove(&fd)?;
        let u = m.by_ip.get_mut(&ip)?;
        u.conns = u.conns.saturating_sub(1);
        u.kept += 1;
        Some(ip)
    }

    /// A session of `ip` kept by the last run and put back at start (`crate::restore`): the
    /// address counts it as a kept session again. Returns its key, for [`PerIp::end_kept`].
    pub fn keep_restored(&self, ip: IpAddr) -> IpAddr {
        let ip = self.key(ip);
        self.maps().by_ip.entry(ip).or_default().kept += 1;
        ip
    }

    /// A kept session of `ip` (from [`PerIp::detach`]) ended or was resumed.
    pub fn end_kept(&self, ip: IpAddr) {
        let now = self.second();
        let mut m = self.maps();
        if let Some(u) = m.by_ip.get_mut(&ip) {
            debug_assert!(u.kept > 0, "a kept session ends once");
            u.kept = u.kept.saturating_sub(1);
        }
        m.forget_if_idle(ip, (self.max_rate > 0).then_some(now));
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
            m.by_ip.retain(|_, u| u.conns > 0 || u.kept > 0 || u.second + 1 >= now_sec);
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
        assert!(PerIp::new(0, 0, 64).is_none());
        let p = PerIp::new(2, 3, 64).unwrap();
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
        let p = PerIp::new(1, 0, 64).unwrap();
        let a: IpAddr = "::1".parse().unwrap();
        assert!(p.admit(3, a) && !p.admit(4, a));
        assert!(p.handshake_in(3, 0));
        p.release_in(3, 0);
        assert_eq!(p.addresses(), 0);
    }

    /// Security review, medium: a session kept for recovery left its address's count, so one
    /// address could hold any number of ghost sessions.
    #[test]
    fn kept_sessions_count_until_they_end() {
        let p = PerIp::new(2, 0, 64).unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(p.admit(1, a) && p.fresh_fits(1));
        let kept = p.detach(1).expect("counted");
        assert!(p.admit(2, a) && p.fresh_fits(2), "one socket and one kept session: 2");
        let kept2 = p.detach(2).unwrap();
        assert!(p.admit(3, a), "a socket is accepted: it may be a resume");
        assert!(!p.fresh_fits(3), "but it may not start a third session");
        p.end_kept(kept);
        assert!(p.fresh_fits(3));
        p.release_in(3, 0);
        assert_eq!(p.addresses(), 1, "the kept session keeps the address");
        p.end_kept(kept2);
        assert_eq!(p.addresses(), 0);
        assert_eq!(p.detach(99), None);
    }

    /// Security review, low: one IPv6 /64 is 2^64 addresses, each with its own bound.
    #[test]
    fn ipv6_clients_count_by_prefix() {
        let p = PerIp::new(1, 0, 64).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(p.admit(1, ip("2001:db8:1:2::1")));
        assert!(!p.admit(2, ip("2001:db8:1:2:ffff::7")), "same /64");
        assert!(p.admit(3, ip("2001:db8:1:3::1")), "another /64");
        assert!(p.admit(4, ip("::ffff:10.0.0.1")));
        assert!(!p.admit(5, ip("10.0.0.1")), "IPv4-mapped is the IPv4 address");
        assert_eq!(PerIp::new(1, 0, 128).unwrap().key(ip("2001:db8::1")), ip("2001:db8::1"));
        assert_eq!(PerIp::new(1, 0, 48).unwrap().key(ip("2001:db8:1:2::1")), ip("2001:db8:1::"));
    }
}
