//! How much of what an attacker wrote the server has not read yet, from `/proc/net/tcp`: the
//! attacker's unacknowledged send queue plus the server socket's receive queue. Writing
//! finishes long before a server has read it all (several MB sit in loopback socket buffers),
//! so a flood's cost is only known once this is zero, and a server that stopped reading is one
//! where it stays above zero.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// How often the queues are read while waiting.
const POLL: Duration = Duration::from_millis(50);

/// Bytes written on the loopback connection `local` → `peer` that `peer`'s process has not
/// read: `local`'s `tx_queue` plus `peer`'s `rx_queue`. `None` if the connection is not in
/// `/proc/net/tcp` (IPv4 only) or the file cannot be read. A peer socket already closed counts
/// as having nothing to read.
pub fn unread(local: SocketAddr, peer: SocketAddr) -> Option<u64> {
    let (SocketAddr::V4(local), SocketAddr::V4(peer)) = (local, peer) else {
        return None;
    };
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let (ours, theirs) = (entry(&local), entry(&peer));
    let mut sent = None;
    let mut received = 0;
    for line in table.lines().skip(1) {
        let mut fields = line.split_ascii_whitespace();
        let (Some(_), Some(l), Some(r), Some(_), Some(queues)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let (tx, rx) = queues.split_once(':')?;
        if l == ours && r == theirs {
            sent = Some(u64::from_str_radix(tx, 16).ok()?);
        } else if l == theirs && r == ours {
            received = u64::from_str_radix(rx, 16).ok()?;
        }
    }
    Some(sent? + received)
}

/// An address as `/proc/net/tcp` prints it: the IPv4 address as the kernel's native-endian
/// hex of its network-order bytes, then the port in hex.
fn entry(addr: &SocketAddrV4) -> String {
    format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(addr.ip().octets()),
        addr.port()
    )
}

/// How waiting for a server to read what it was sent ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drain {
    /// It read everything.
    Read,
    /// This many bytes stayed unread, without shrinking, for the quiet bound: it stopped
    /// reading.
    Stopped(u64),
    /// This many bytes were still unread at the time bound.
    TimeUp(u64),
    /// The queues could not be read.
    Unknown,
}

/// Waits until the server at `peer` has read everything `local` wrote, it stops reading (no
/// progress for `quiet`), or `bound` passes.
pub fn wait_until_read(
    local: SocketAddr,
    peer: SocketAddr,
    quiet: Duration,
    bound: Duration,
) -> Drain {
    let start = Instant::now();
    let mut least = u64::MAX;
    let mut progress_at = start;
    // Bounded by `bound`.
    loop {
        let Some(left) = unread(local, peer) else {
            return Drain::Unknown;
        };
        if left == 0 {
            return Drain::Read;
        }
        let now = Instant::now();
        if left < least {
            least = left;
            progress_at = now;
        } else if now - progress_at >= quiet {
            return Drain::Stopped(left);
        }
        if now - start >= bound {
            return Drain::TimeUp(left);
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn unread_bytes_are_seen_until_read() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let (local, peer) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        assert_eq!(unread(local, peer), Some(0));
        client.write_all(&[7; 1000]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while unread(local, peer) != Some(1000) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(unread(local, peer), Some(1000));
        assert_eq!(
            wait_until_read(
                local,
                peer,
                Duration::from_millis(200),
                Duration::from_secs(5)
            ),
            Drain::Stopped(1000)
        );
        let mut buf = [0; 1000];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(
            wait_until_read(local, peer, Duration::from_secs(1), Duration::from_secs(5)),
            Drain::Read
        );
    }
}
