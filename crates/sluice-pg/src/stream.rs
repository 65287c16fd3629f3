//! A TCP stream that may have been upgraded to TLS, on either side of the gateway, and its halves.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

type TlsStream = Box<tokio_rustls::TlsStream<TcpStream>>;

pub enum PgStream {
    Plain(TcpStream),
    Tls(TlsStream),
}

/// What a session reads from one side. A plain TCP stream splits into halves that share no lock;
/// TLS needs tokio's shared halves (one cipher state for both directions).
pub enum PgReadHalf {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<TlsStream>),
}

/// What a session writes to one side (see [`PgReadHalf`]).
pub enum PgWriteHalf {
    Plain(OwnedWriteHalf),
    Tls(WriteHalf<TlsStream>),
}

impl PgStream {
    pub fn is_tls(&self) -> bool {
        matches!(self, PgStream::Tls(_))
    }

    pub fn into_split(self) -> (PgReadHalf, PgWriteHalf) {
        match self {
            PgStream::Plain(tcp) => {
                let (read, write) = tcp.into_split();
                (PgReadHalf::Plain(read), PgWriteHalf::Plain(write))
            }
            PgStream::Tls(tls) => {
                let (read, write) = tokio::io::split(tls);
                (PgReadHalf::Tls(read), PgWriteHalf::Tls(write))
            }
        }
    }
}

/// Forwards a poll to whichever variant `$self` (a pinned enum of two streams) holds.
macro_rules! either {
    ($self:expr, $enum:ident, $s:ident => $call:expr) => {
        match $self.get_mut() {
            $enum::Plain($s) => {
                let $s = Pin::new($s);
                $call
            }
            $enum::Tls($s) => {
                let $s = Pin::new($s);
                $call
            }
        }
    };
}

macro_rules! impl_read {
    ($enum:ident) => {
        impl AsyncRead for $enum {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                either!(self, $enum, s => s.poll_read(cx, buf))
            }
        }
    };
}

macro_rules! impl_write {
    ($enum:ident) => {
        impl AsyncWrite for $enum {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                either!(self, $enum, s => s.poll_write(cx, buf))
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                either!(self, $enum, s => s.poll_write_vectored(cx, bufs))
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    $enum::Plain(s) => s.is_write_vectored(),
                    $enum::Tls(s) => s.is_write_vectored(),
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                either!(self, $enum, s => s.poll_flush(cx))
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                either!(self, $enum, s => s.poll_shutdown(cx))
            }
        }
    };
}

impl_read!(PgStream);
impl_read!(PgReadHalf);
impl_write!(PgStream);
impl_write!(PgWriteHalf);
