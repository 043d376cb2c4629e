//! How much of what an attacker wrote the server has not read yet: what the attacker's socket
//! has not sent (`TCP_INFO`) plus the server socket's receive queue (arrived, not yet read, as
//! `ss` shows it), asked of the kernel through `NETLINK_SOCK_DIAG` for exactly that socket. Writing finishes long before a server has read it all (several MB sit in
//! loopback socket buffers), so a flood's cost is only known once this is zero, and a server
//! that stopped reading is one where it stays above zero.
//!
//! Netlink rather than `/proc/net/tcp`: that file lists every socket of the machine, which on
//! a box full of TIME_WAIT takes milliseconds of kernel time per read, taken from the server
//! being measured; an exact lookup costs microseconds.

use std::io;
use std::mem::size_of;
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// How often the queues are read while waiting, at most: the wait starts at a millisecond and
/// doubles up to this, so a server that reads quickly is not made to look slow by the polling.
const POLL: Duration = Duration::from_millis(50);

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// `struct inet_diag_sockid` (linux/inet_diag.h); ports and addresses in network order.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagSockId {
    sport: [u8; 2],
    dport: [u8; 2],
    src: [[u8; 4]; 4],
    dst: [[u8; 4]; 4],
    interface: u32,
    cookie: [u32; 2],
}

/// `struct inet_diag_req_v2`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagReqV2 {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: InetDiagSockId,
}

/// `struct inet_diag_msg`, the answer's head.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagMsg {
    family: u8,
    state: u8,
    timer: u8,
    retrans: u8,
    id: InetDiagSockId,
    expires: u32,
    rqueue: u32,
    wqueue: u32,
    uid: u32,
    inode: u32,
}

/// The request: a netlink header and the exact socket asked for.
#[repr(C)]
struct Request {
    header: libc::nlmsghdr,
    body: InetDiagReqV2,
}

/// `(receive queue, send queue)` of the TCP socket whose local end is `local` and remote end
/// `remote`; `Ok(None)` if there is no such socket (closed).
fn queues(local: SocketAddrV4, remote: SocketAddrV4) -> io::Result<Option<(u32, u32)>> {
    let request = Request {
        header: libc::nlmsghdr {
            nlmsg_len: size_of::<Request>() as u32,
            nlmsg_type: SOCK_DIAG_BY_FAMILY,
            // No NLM_F_DUMP: an exact lookup by the four-tuple.
            nlmsg_flags: libc::NLM_F_REQUEST as u16,
            nlmsg_seq: 1,
            nlmsg_pid: 0,
        },
        body: InetDiagReqV2 {
            family: libc::AF_INET as u8,
            protocol: libc::IPPROTO_TCP as u8,
            states: !0,
            id: InetDiagSockId {
                sport: local.port().to_be_bytes(),
                dport: remote.port().to_be_bytes(),
                src: [local.ip().octets(), [0; 4], [0; 4], [0; 4]],
                dst: [remote.ip().octets(), [0; 4], [0; 4], [0; 4]],
                // INET_DIAG_NOCOOKIE: any socket with that four-tuple.
                cookie: [!0, !0],
                ..InetDiagSockId::default()
            },
            ..InetDiagReqV2::default()
        },
    };
    // SAFETY: a plain socket call; the descriptor is closed below on every path.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut answer = [0u8; 1024];
    // SAFETY: `request` is a live repr(C) value of exactly the length passed; `answer` is a
    // buffer we own of the length passed; `fd` is ours and closed once, here.
    let received = unsafe {
        let sent = libc::send(
            fd,
            (&request as *const Request).cast(),
            size_of::<Request>(),
            0,
        );
        let received = if sent == size_of::<Request>() as isize {
            libc::recv(fd, answer.as_mut_ptr().cast(), answer.len(), 0)
        } else {
            -1
        };
        let error = io::Error::last_os_error();
        libc::close(fd);
        if received < 0 {
            return Err(error);
        }
        received as usize
    };
    let header_len = size_of::<libc::nlmsghdr>();
    if received < header_len {
        return Err(io::Error::other("short netlink answer"));
    }
    // SAFETY: at least a header's worth of bytes was received; read_unaligned copes with the
    // byte buffer's alignment.
    let header: libc::nlmsghdr = unsafe { std::ptr::read_unaligned(answer.as_ptr().cast()) };
    if i32::from(header.nlmsg_type) == libc::NLMSG_ERROR {
        // An nlmsgerr follows: a negative errno first. ENOENT: no such socket.
        let errno = i32::from_ne_bytes(
            answer[header_len..header_len + 4]
                .try_into()
                .unwrap_or([0; 4]),
        );
        return match -errno {
            libc::ENOENT => Ok(None),
            e => Err(io::Error::from_raw_os_error(e)),
        };
    }
    if header.nlmsg_type != SOCK_DIAG_BY_FAMILY || received < header_len + size_of::<InetDiagMsg>()
    {
        return Err(io::Error::other("unexpected netlink answer"));
    }
    // SAFETY: the answer holds a whole inet_diag_msg after the header (checked above).
    let msg: InetDiagMsg =
        unsafe { std::ptr::read_unaligned(answer[header_len..].as_ptr().cast()) };
    Ok(Some((msg.rqueue, msg.wqueue)))
}

/// Bytes written on `stream` (a loopback connection) that the process at its other end has
/// not read: what `stream` has not sent yet (`tcpi_notsent_bytes`) plus the peer socket's
/// receive queue. Bytes sent but not yet acknowledged are not counted: on loopback a sent
/// segment is in the peer's receive queue at once, and one already read may wait 40 ms for a
/// delayed ACK, which says nothing about the reader. `None` if the queues cannot be read (IPv4
/// only); a peer socket already closed counts as having nothing to read.
pub fn unread(stream: &TcpStream) -> Option<u64> {
    let (Ok(SocketAddr::V4(local)), Ok(SocketAddr::V4(peer))) =
        (stream.local_addr(), stream.peer_addr())
    else {
        return None;
    };
    // SAFETY: getsockopt writes at most `len` bytes into a zeroed tcp_info we own.
    let not_sent = unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        // Kernels before 4.6 fill less of the struct: the field must be in what was written.
        let needed = std::mem::offset_of!(libc::tcp_info, tcpi_notsent_bytes) + 4;
        if rc != 0 || (len as usize) < needed {
            return None;
        }
        info.tcpi_notsent_bytes
    };
    let received = queues(peer, local).ok()?.map_or(0, |(rx, _)| rx);
    Some(u64::from(not_sent) + u64::from(received))
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

/// Waits until the process at the other end of `stream` has read everything written on it,
/// stops reading (no progress for `quiet`), or `bound` passes.
pub fn wait_until_read(stream: &TcpStream, quiet: Duration, bound: Duration) -> Drain {
    let start = Instant::now();
    let mut least = u64::MAX;
    let mut progress_at = start;
    let mut pause = Duration::from_millis(1);
    // Bounded by `bound`.
    loop {
        let Some(left) = unread(stream) else {
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
        std::thread::sleep(pause);
        pause = (pause * 2).min(POLL);
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
        assert_eq!(unread(&client), Some(0));
        client.write_all(&[7; 1000]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while unread(&client) != Some(1000) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(unread(&client), Some(1000));
        assert_eq!(
            wait_until_read(&client, Duration::from_millis(200), Duration::from_secs(5)),
            Drain::Stopped(1000)
        );
        let mut buf = [0; 1000];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(
            wait_until_read(&client, Duration::from_secs(1), Duration::from_secs(5)),
            Drain::Read
        );
    }
}
