//! STUB: the epoll backend is being written.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use bytes::Bytes;

use super::{Backend, BufId, Completion, PoolConfig, Token, Waker};

/// The epoll backend.
pub struct EpollBackend {
    waker: Waker,
}

impl EpollBackend {
    /// Sets up the backend with its receive pool.
    pub fn new(_pool: PoolConfig) -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "not written yet",
        ))
    }
}

impl Backend for EpollBackend {
    fn name(&self) -> &'static str {
        "epoll"
    }
    fn listen(&mut self, _listener: RawFd) -> io::Result<()> {
        unimplemented!()
    }
    fn stop_accepting(&mut self) {}
    fn register(&mut self, _token: Token, _fd: RawFd) -> io::Result<()> {
        unimplemented!()
    }
    fn send(&mut self, _token: Token, _fd: RawFd, _chunks: Vec<Bytes>) {}
    fn shutdown_write(&mut self, _token: Token, _fd: RawFd) {}
    fn close(&mut self, _token: Token, _fd: RawFd) {}
    fn wait(&mut self, _timeout: Option<Duration>, _out: &mut Vec<Completion>) -> io::Result<()> {
        unimplemented!()
    }
    fn buffer(&self, _buf: BufId, _len: usize) -> &[u8] {
        &[]
    }
    fn recycle(&mut self, _buf: BufId) {}
    fn waker(&self) -> Waker {
        self.waker.clone()
    }
}
