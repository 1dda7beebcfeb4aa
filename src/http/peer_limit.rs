//! The cap on open TCP connections per client address, shared by every shard's accept loop.
//!
//! Every accepted connection, plain HTTP and WebSocket alike, takes a [`PeerPermit`] before
//! hyper sees it. The permit rides inside the connection's I/O ([`CountedStream`]), so it is
//! given back exactly when the socket is dropped: after the last HTTP request, or when an
//! upgraded WebSocket ends (the upgrade hands the same I/O object to the session).
//!
//! IPv4 addresses are counted one by one; IPv6 clients by their /64, because one host is
//! usually given a whole /64 and could otherwise open a connection from each address.
//!
//! Cost: one hash and one `DashMap` shard lock when a connection opens and again when it
//! closes; nothing per request or frame. The map holds one entry per address with a
//! connection open, so it is bounded by the open connections.

use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Open connections per client address, against `--max-connections-per-ip`.
pub struct PeerLimiter {
    open: Arc<DashMap<IpAddr, usize>>,
    max: usize,
    /// Demo mode: the load tester and the tests connect from loopback by the thousand.
    exempt_loopback: bool,
}

/// One counted connection of one client address; dropping it frees the slot.
#[derive(Debug)]
pub struct PeerPermit {
    /// `None` for an exempt address, which is not counted.
    slot: Option<(Arc<DashMap<IpAddr, usize>>, IpAddr)>,
}

impl PeerLimiter {
    pub fn new(max: usize, exempt_loopback: bool) -> Self {
        assert!(max > 0, "a per-address cap of 0 would refuse everyone");
        PeerLimiter {
            open: Arc::new(DashMap::new()),
            max,
            exempt_loopback,
        }
    }

    /// Counts a new connection from `peer`, or `None` when that address is at its cap.
    pub fn try_acquire(&self, peer: IpAddr) -> Option<PeerPermit> {
        let peer = peer.to_canonical();
        if self.exempt_loopback && peer.is_loopback() {
            return Some(PeerPermit { slot: None });
        }
        let key = address_key(peer);
        let mut open = self.open.entry(key).or_insert(0);
        if *open >= self.max {
            return None;
        }
        *open += 1;
        Some(PeerPermit {
            slot: Some((Arc::clone(&self.open), key)),
        })
    }

    /// Connections `peer` has open now (0 for an exempt address).
    #[cfg(test)]
    pub fn open(&self, peer: IpAddr) -> usize {
        let key = address_key(peer.to_canonical());
        self.open.get(&key).map_or(0, |open| *open)
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

/// What connections are counted under: the address itself, or an IPv6 address's /64.
fn address_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
    }
}

impl Drop for PeerPermit {
    fn drop(&mut self) {
        let Some((open, key)) = self.slot.take() else {
            return;
        };
        // The entry API holds the shard lock, so a concurrent acquire cannot see the count
        // between the decrement and the removal.
        if let Entry::Occupied(mut entry) = open.entry(key) {
            let count = entry.get_mut();
            debug_assert!(*count > 0, "a permit outlived its count");
            *count = count.saturating_sub(1);
            if *count == 0 {
                entry.remove();
            }
        }
    }
}

/// A TCP connection together with its per-address permit: the permit lives exactly as long as
/// the socket, wherever the socket goes (hyper's connection, then an upgraded WebSocket).
/// Reads and writes go straight to the socket.
pub struct CountedStream {
    stream: TcpStream,
    _permit: PeerPermit,
}

impl CountedStream {
    pub fn new(stream: TcpStream, permit: PeerPermit) -> Self {
        CountedStream {
            stream,
            _permit: permit,
        }
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn an_address_at_its_cap_is_refused_until_a_connection_closes() {
        let limiter = PeerLimiter::new(2, false);
        let first = limiter.try_acquire(ip("192.0.2.1")).expect("first");
        let _second = limiter.try_acquire(ip("192.0.2.1")).expect("second");
        assert!(limiter.try_acquire(ip("192.0.2.1")).is_none());
        assert!(
            limiter.try_acquire(ip("192.0.2.2")).is_some(),
            "others unaffected"
        );
        drop(first);
        assert_eq!(limiter.open(ip("192.0.2.1")), 1);
        assert!(limiter.try_acquire(ip("192.0.2.1")).is_some());
    }

    #[test]
    fn an_address_with_nothing_open_leaves_no_entry() {
        let limiter = PeerLimiter::new(2, false);
        let permit = limiter.try_acquire(ip("192.0.2.1")).expect("permit");
        drop(permit);
        assert!(limiter.open.is_empty());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let limiter = PeerLimiter::new(1, false);
        let _held = limiter.try_acquire(ip("2001:db8:1:2::1")).expect("first");
        assert!(limiter.try_acquire(ip("2001:db8:1:2::ffff")).is_none());
        assert!(limiter.try_acquire(ip("2001:db8:1:3::1")).is_some());
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_the_ipv4_address() {
        let limiter = PeerLimiter::new(1, false);
        let _held = limiter.try_acquire(ip("192.0.2.1")).expect("first");
        assert!(limiter.try_acquire(ip("::ffff:192.0.2.1")).is_none());
    }

    #[test]
    fn loopback_is_exempt_only_when_asked() {
        let exempt = PeerLimiter::new(1, true);
        let held: Vec<_> = (0..5)
            .map(|_| exempt.try_acquire(ip("127.0.0.1")))
            .collect();
        assert!(held.iter().all(Option::is_some));
        assert!(exempt.try_acquire(ip("::1")).is_some());
        let capped = PeerLimiter::new(1, false);
        let _held = capped.try_acquire(ip("127.0.0.1")).expect("first");
        assert!(capped.try_acquire(ip("127.0.0.1")).is_none());
    }
}
