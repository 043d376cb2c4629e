//! Refusing connections a shard cannot take, with an answer instead of silence.
//!
//! Two cases. Over `max_connections`, the connection is accepted already: it gets the 503 and
//! is closed. Out of file descriptors (EMFILE, ENFILE), nothing can be accepted at all, and
//! the waiting clients would hang until their own timeouts: so each shard keeps one reserve
//! descriptor (`/dev/null`). When the reactor reports that accepting failed for lack of
//! descriptors, the shard closes the reserve, which frees exactly one; accepts waiting
//! connections itself from its listeners (a bounded batch), each one borrowing that descriptor
//! for a 503 and giving it back at its close; then opens the reserve again. The reactor,
//! meanwhile, rests the listener ([`crate::reactor::ACCEPT_RETRY`]), so this runs at most once
//! per rest and never spins.
//!
//! Each episode is logged twice: when descriptors run out, and when accepting works again (with
//! how many connections were refused meanwhile); never once per connection.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;

/// The whole answer to a connection the server cannot serve: fixed, short enough for any
/// fresh socket's send buffer, so one non-blocking send writes it.
pub(crate) const SERVICE_UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Retry-After: 5\r\n\
Connection: close\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 57\r\n\
\r\n\
The server is out of connections; try again in a moment.\n";

/// Most `accept4` calls per refusal batch, over all of a shard's listeners: bounds the time one
/// batch takes from the connections the shard serves. The next batch comes after the
/// reactor's rest, so a backlog is still worked through at several hundred a second.
const REFUSE_BATCH: usize = 128;

/// Bytes of the client's request read (and dropped) before closing a refused connection, at
/// most: reading what has arrived lets the close send a FIN rather than a reset, which some
/// clients answer by discarding the 503 unread. A request head is at most 8 KiB.
const DRAIN_MAX: usize = 16 << 10;

/// Answers `fd` with [`SERVICE_UNAVAILABLE`] and closes it. Never blocks: a socket that cannot
/// take the answer at once just gets closed.
pub(crate) fn refuse(fd: OwnedFd) {
    let socket = socket2::Socket::from(fd);
    // MSG_NOSIGNAL keeps a peer that is gone from raising SIGPIPE.
    let _ = socket.send_with_flags(SERVICE_UNAVAILABLE, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT);
    let mut sink = [MaybeUninit::<u8>::uninit(); 4096];
    let mut drained = 0;
    while drained < DRAIN_MAX {
        match socket.recv_with_flags(&mut sink, libc::MSG_DONTWAIT) {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
    }
    // Closed as `socket` drops.
}

/// A shard's reserve descriptor and the state of its current episode of accept failures.
pub(crate) struct Refusals {
    /// Keep a reserve descriptor (`Limits::reserve_fd`, and the shard has listeners).
    wanted: bool,
    /// The reserve itself, when held. Lost when another thread took the freed descriptor
    /// before it could be opened again; taken back when accepting works again.
    reserve: Option<OwnedFd>,
    /// Accepting is failing: an episode is under way (and has been logged).
    failing: bool,
    /// Connections refused with a 503 during this episode.
    refused: u64,
}

impl Refusals {
    /// Holds nothing yet: [`Refusals::start`] opens the reserve on the shard's thread.
    pub(super) fn new(wanted: bool) -> Self {
        Self {
            wanted,
            reserve: None,
            failing: false,
            refused: 0,
        }
    }

    /// Opens the reserve, if one is wanted; says so once if that is impossible.
    pub(super) fn start(&mut self, shard: usize) {
        if !self.wanted {
            return;
        }
        match open_reserve() {
            Ok(fd) => self.reserve = Some(fd),
            Err(e) => eprintln!(
                "ringsock: shard {shard}: no reserve descriptor ({e}); when descriptors run out, \
                 waiting connections will wait instead of getting 503"
            ),
        }
    }

    /// The reactor could not accept. Out of descriptors, the waiting connections get their
    /// 503 through the reserve (unless the shard is shutting down).
    pub(super) fn accept_failed(
        &mut self,
        shard: usize,
        error: &io::Error,
        listeners: &[OwnedFd],
        shutting_down: bool,
    ) {
        let out_of_fds = matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
        if !self.failing {
            self.failing = true;
            self.refused = 0;
            if !out_of_fds {
                eprintln!("ringsock: shard {shard}: accepting failed ({error}); retrying");
            } else if self.wanted {
                eprintln!(
                    "ringsock: shard {shard}: out of file descriptors ({error}); waiting \
                     connections get 503 until one is free"
                );
            } else {
                eprintln!(
                    "ringsock: shard {shard}: out of file descriptors ({error}); waiting \
                     connections wait until one is free"
                );
            }
        }
        if out_of_fds && !shutting_down {
            self.refused += self.refuse_waiting(listeners) as u64;
        }
    }

    /// The reactor accepted a connection: an episode of failures, if any, is over.
    pub(super) fn accepted(&mut self, shard: usize) {
        if !self.failing {
            return;
        }
        self.failing = false;
        match self.refused {
            0 => eprintln!("ringsock: shard {shard}: accepting again"),
            n => eprintln!(
                "ringsock: shard {shard}: accepting again ({n} connections refused with 503 \
                 meanwhile)"
            ),
        }
        if self.wanted && self.reserve.is_none() {
            self.reserve = open_reserve().ok();
        }
    }

    /// Trades the reserve for up to [`REFUSE_BATCH`] waiting connections, each answered with
    /// the 503 and closed, then takes the reserve back. Returns how many were refused.
    fn refuse_waiting(&mut self, listeners: &[OwnedFd]) -> usize {
        let Some(reserve) = self.reserve.take() else {
            // Lost earlier to another thread (or never opened): try to get it back for the
            // next time; at the limit this fails, for one syscall per reactor rest.
            if self.wanted {
                self.reserve = open_reserve().ok();
            }
            return 0;
        };
        drop(reserve);
        let mut refused = 0;
        let mut attempts = 0;
        'listeners: for listener in listeners {
            while attempts < REFUSE_BATCH {
                attempts += 1;
                // (The refusal's own calls say MSG_DONTWAIT, so a blocking socket is fine.)
                let error = match socket2::SockRef::from(listener).accept() {
                    Ok((socket, _)) => {
                        refuse(socket.into());
                        refused += 1;
                        continue;
                    }
                    Err(e) => e,
                };
                match error.raw_os_error() {
                    // That one connection went away, or a signal came: try the next.
                    Some(libc::EINTR | libc::ECONNABORTED) => continue,
                    // EAGAIN: nobody else waits here. Anything else (EMFILE: another thread
                    // took the descriptor first): this listener is done for now.
                    _ => continue 'listeners,
                }
            }
            break;
        }
        self.reserve = open_reserve().ok();
        refused
    }
}

/// A descriptor that holds nothing but its slot in the table (close-on-exec, as std opens).
fn open_reserve() -> io::Result<OwnedFd> {
    std::fs::File::open("/dev/null").map(OwnedFd::from)
}

#[cfg(test)]
mod tests {
    use super::SERVICE_UNAVAILABLE;

    #[test]
    fn the_503_is_well_formed_and_its_length_right() {
        let text = std::str::from_utf8(SERVICE_UNAVAILABLE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(head.contains("\r\nConnection: close"));
        assert!(head.contains("\r\nRetry-After: "));
        let length: usize = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        assert_eq!(body.lines().count(), 1);
    }
}
