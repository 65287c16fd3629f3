//! SFTP's packets (version 3, as OpenSSH speaks it): split from a byte stream by their length,
//! the client's requests read into what they do to which path or handle, and the few packets
//! sluice writes itself (its own INIT and REALPATH, STATUS for a refusal, the client's VERSION).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The longest packet accepted from a client (OpenSSH's own limit is 256 KiB).
pub const MAX_CLIENT_PACKET: usize = 256 * 1024 + 1024;
/// The longest packet accepted from a host.
pub const MAX_HOST_PACKET: usize = 16 * 1024 * 1024;

pub const INIT: u8 = 1;
pub const VERSION: u8 = 2;
pub const OPEN: u8 = 3;
pub const CLOSE: u8 = 4;
pub const READ: u8 = 5;
pub const WRITE: u8 = 6;
pub const LSTAT: u8 = 7;
pub const FSTAT: u8 = 8;
pub const SETSTAT: u8 = 9;
pub const FSETSTAT: u8 = 10;
pub const OPENDIR: u8 = 11;
pub const READDIR: u8 = 12;
pub const REMOVE: u8 = 13;
pub const MKDIR: u8 = 14;
pub const RMDIR: u8 = 15;
pub const REALPATH: u8 = 16;
pub const STAT: u8 = 17;
pub const RENAME: u8 = 18;
pub const READLINK: u8 = 19;
pub const SYMLINK: u8 = 20;
pub const STATUS: u8 = 101;
pub const HANDLE: u8 = 102;
pub const NAME: u8 = 104;
pub const EXTENDED: u8 = 200;

pub const FX_PERMISSION_DENIED: u32 = 3;
pub const FX_FAILURE: u32 = 4;
pub const FX_BAD_MESSAGE: u32 = 5;
pub const FX_OP_UNSUPPORTED: u32 = 8;

/// OPEN's flags that make it write.
const WRITING_FLAGS: u32 = 0x02 | 0x04 | 0x08 | 0x10;
const READ_FLAG: u32 = 0x01;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("an SFTP packet of {0} bytes is longer than sluice accepts")]
    TooLong(usize),
    #[error("an SFTP packet of type {0} ends early or holds a name that is not UTF-8 or has a NUL in it")]
    Malformed(u8),
}

/// Splits packets (length prefix included) off the front of `buf` as they complete.
pub fn next_packet(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len == 0 || len > max {
        return Err(WireError::TooLong(len));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    Ok(Some(buf.split_to(4 + len).freeze()))
}

/// A packet's type and request id (the id of INIT and VERSION is their version).
pub fn header(packet: &[u8]) -> Option<(u8, u32)> {
    let kind = *packet.get(4)?;
    let id = packet.get(5..9).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    Some((kind, id))
}

/// What a client's request does, as policy needs to know it.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Opens a file: `reads`/`writes` from its flags.
    Open {
        path: String,
        reads: bool,
        writes: bool,
    },
    OpenDir {
        path: String,
    },
    /// Reads a file's attributes or a link's target (`stat`, `lstat`, `readlink`, `statvfs`).
    Inspect {
        path: String,
    },
    Setstat {
        path: String,
    },
    Remove {
        path: String,
    },
    Mkdir {
        path: String,
    },
    Rmdir {
        path: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Link {
        link: String,
        target: String,
    },
    /// Works on a handle opened before (read, write, close, fstat, readdir, fsync, fstatvfs).
    OnHandle {
        handle: Bytes,
        setstat: bool,
    },
    /// Copies between two handles (`copy-data`).
    Copy {
        from: Bytes,
        to: Bytes,
    },
    /// Reads no file: realpath, expand-path, limits, home-directory, users-groups-by-id.
    Harmless,
    /// An extension sluice does not pass on.
    Unsupported(String),
}

/// The extensions sluice passes on (and advertises), with whether a request of each reads no file.
pub const EXTENSIONS: [&str; 11] = [
    "posix-rename@openssh.com",
    "statvfs@openssh.com",
    "fstatvfs@openssh.com",
    "hardlink@openssh.com",
    "fsync@openssh.com",
    "lsetstat@openssh.com",
    "limits@openssh.com",
    "expand-path@openssh.com",
    "copy-data",
    "home-directory",
    "users-groups-by-id@openssh.com",
];

/// Reads a client request (a packet from `next_packet`, of a type other than INIT).
pub fn request(packet: &Bytes) -> Result<Request, WireError> {
    let kind = packet.get(4).copied().unwrap_or(0);
    let bad = || WireError::Malformed(kind);
    let mut body = packet.slice(packet.len().min(9)..);
    let mut path = || string(&mut body).ok_or_else(bad);
    Ok(match kind {
        OPEN => {
            let p = path()?;
            let flags = u32_of(&mut body).ok_or_else(bad)?;
            Request::Open { path: p, reads: flags & READ_FLAG != 0, writes: flags & WRITING_FLAGS != 0 }
        }
        OPENDIR => Request::OpenDir { path: path()? },
        LSTAT | STAT | READLINK => Request::Inspect { path: path()? },
        SETSTAT => Request::Setstat { path: path()? },
        REMOVE => Request::Remove { path: path()? },
        MKDIR => Request::Mkdir { path: path()? },
        RMDIR => Request::Rmdir { path: path()? },
        REALPATH => Request::Harmless,
        RENAME => Request::Rename { from: path()?, to: path()? },
        // (OpenSSH sends the target first: which is which does not matter, both are decided.)
        SYMLINK => Request::Link { link: path()?, target: path()? },
        CLOSE | READ | WRITE | FSTAT | READDIR => {
            Request::OnHandle { handle: bytes(&mut body).ok_or_else(bad)?, setstat: false }
        }
        FSETSTAT => Request::OnHandle { handle: bytes(&mut body).ok_or_else(bad)?, setstat: true },
        EXTENDED => extended(&mut body).ok_or_else(bad)?,
        other => Request::Unsupported(format!("request type {other}")),
    })
}

fn extended(body: &mut Bytes) -> Option<Request> {
    let name = string(body)?;
    Some(match name.as_str() {
        "posix-rename@openssh.com" => Request::Rename { from: string(body)?, to: string(body)? },
        "hardlink@openssh.com" => Request::Link { link: string(body)?, target: string(body)? },
        "statvfs@openssh.com" => Request::Inspect { path: string(body)? },
        "lsetstat@openssh.com" => Request::Setstat { path: string(body)? },
        "fstatvfs@openssh.com" | "fsync@openssh.com" => Request::OnHandle { handle: bytes(body)?, setstat: false },
        "copy-data" => {
            let from = bytes(body)?;
            let _offset_and_length = (u64_of(body)?, u64_of(body)?);
            Request::Copy { from, to: bytes(body)? }
        }
        "limits@openssh.com" | "expand-path@openssh.com" | "home-directory" | "users-groups-by-id@openssh.com" => {
            Request::Harmless
        }
        _ => Request::Unsupported(format!("the extension {name}")),
    })
}

fn u32_of(body: &mut Bytes) -> Option<u32> {
    (body.remaining() >= 4).then(|| body.get_u32())
}

fn u64_of(body: &mut Bytes) -> Option<u64> {
    (body.remaining() >= 8).then(|| body.get_u64())
}

fn bytes(body: &mut Bytes) -> Option<Bytes> {
    let len = u32_of(body)? as usize;
    (body.remaining() >= len).then(|| body.split_to(len))
}

/// A name: UTF-8 without NUL (the host's server stops a name at a NUL, where sluice would read on:
/// such a name is refused rather than decided as another).
fn string(body: &mut Bytes) -> Option<String> {
    String::from_utf8(bytes(body)?.to_vec()).ok().filter(|s| !s.contains('\0'))
}

/// The handle in a HANDLE reply.
pub fn handle_of(packet: &Bytes) -> Option<Bytes> {
    bytes(&mut packet.slice(packet.len().min(9)..))
}

/// The first name in a NAME reply (REALPATH's answer).
pub fn first_name(packet: &Bytes) -> Option<String> {
    if packet.get(4) != Some(&NAME) {
        return None;
    }
    let mut body = packet.slice(packet.len().min(9)..);
    let count = u32_of(&mut body)?;
    (count > 0).then(|| string(&mut body)).flatten()
}

/// The extension names in a VERSION packet.
pub fn version_extensions(packet: &Bytes) -> Vec<(String, Bytes)> {
    let mut body = packet.slice(packet.len().min(9)..);
    let mut out = Vec::new();
    while let (Some(name), Some(data)) = (string(&mut body), bytes(&mut body)) {
        out.push((name, data));
    }
    out
}

fn packet(kind: u8, fill: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    out.put_u32(0);
    out.put_u8(kind);
    fill(&mut out);
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out.freeze()
}

fn put_str(out: &mut BytesMut, s: &[u8]) {
    out.put_u32(s.len() as u32);
    out.put_slice(s);
}

pub fn init() -> Bytes {
    packet(INIT, |p| p.put_u32(3))
}

pub fn version(extensions: &[(String, Bytes)]) -> Bytes {
    packet(VERSION, |p| {
        p.put_u32(3);
        for (name, data) in extensions {
            put_str(p, name.as_bytes());
            put_str(p, data);
        }
    })
}

pub fn realpath(id: u32, path: &str) -> Bytes {
    packet(REALPATH, |p| {
        p.put_u32(id);
        put_str(p, path.as_bytes());
    })
}

pub fn status(id: u32, code: u32, message: &str) -> Bytes {
    packet(STATUS, |p| {
        p.put_u32(id);
        p.put_u32(code);
        put_str(p, message.as_bytes());
        put_str(p, b"en");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_packet(kind: u8, id: u32, fill: impl FnOnce(&mut BytesMut)) -> Bytes {
        packet(kind, |p| {
            p.put_u32(id);
            fill(p);
        })
    }

    #[test]
    fn packets_are_split_as_they_complete() {
        let one = realpath(7, ".");
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&one[..5]);
        assert_eq!(next_packet(&mut buf, MAX_CLIENT_PACKET), Ok(None));
        buf.extend_from_slice(&one[5..]);
        buf.extend_from_slice(&one);
        assert_eq!(next_packet(&mut buf, MAX_CLIENT_PACKET), Ok(Some(one.clone())));
        assert_eq!(header(&one), Some((REALPATH, 7)));
        assert_eq!(next_packet(&mut buf, MAX_CLIENT_PACKET), Ok(Some(one)));
        assert!(buf.is_empty());
        let mut huge = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff, 3][..]);
        assert!(matches!(next_packet(&mut huge, MAX_CLIENT_PACKET), Err(WireError::TooLong(_))));
    }

    #[test]
    fn requests_are_read_into_what_they_do() {
        let open = request_packet(OPEN, 1, |p| {
            put_str(p, b"/srv/a");
            p.put_u32(0x01 | 0x08);
            p.put_u32(0);
        });
        assert_eq!(request(&open), Ok(Request::Open { path: "/srv/a".into(), reads: true, writes: true }));
        let rename = request_packet(EXTENDED, 2, |p| {
            put_str(p, b"posix-rename@openssh.com");
            put_str(p, b"a");
            put_str(p, b"b");
        });
        assert_eq!(request(&rename), Ok(Request::Rename { from: "a".into(), to: "b".into() }));
        let unknown = request_packet(EXTENDED, 3, |p| put_str(p, b"evil@example.com"));
        assert!(matches!(request(&unknown), Ok(Request::Unsupported(_))));
        let cut = request_packet(REMOVE, 4, |p| p.put_u32(100));
        assert_eq!(request(&cut), Err(WireError::Malformed(REMOVE)));
        let not_utf8 = request_packet(MKDIR, 5, |p| put_str(p, &[0xff, 0xfe]));
        assert_eq!(request(&not_utf8), Err(WireError::Malformed(MKDIR)));
        let cut_short = request_packet(OPENDIR, 6, |p| put_str(p, b"/etc\0/../srv/pub"));
        assert_eq!(request(&cut_short), Err(WireError::Malformed(OPENDIR)));
    }
}
