"""A deliberately small PostgreSQL wire client for tests that must send what real drivers never
would: malformed frames, oversized messages, vanishing mid-result."""

import socket
import struct


def message(tag: bytes, body: bytes) -> bytes:
    return tag + struct.pack("!i", len(body) + 4) + body


def startup(user: str, database: str) -> bytes:
    params = f"user\0{user}\0database\0{database}\0\0".encode()
    body = struct.pack("!i", 196608) + params
    return struct.pack("!i", len(body) + 4) + body


class Raw:
    def __init__(self, port, token, connection="shop", user="agent", timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.sock.sendall(startup(user, connection))
        tag, body = self.read()
        assert tag == b"R" and struct.unpack("!i", body)[0] == 3, (tag, body)
        self.sock.sendall(message(b"p", token.encode() + b"\0"))
        self._until_started()

    @classmethod
    def direct(cls, socket_dir, port, user, database, timeout=10):
        """A session straight to PostgreSQL over its Unix socket (trusted there), not through sluice."""
        raw = cls.__new__(cls)
        raw.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.sock.settimeout(timeout)
        raw.sock.connect(f"{socket_dir}/.s.PGSQL.{port}")
        raw.buf = b""
        raw.sock.sendall(startup(user, database))
        raw._until_started()
        return raw

    def _until_started(self):
        self.params = {}
        while True:
            tag, body = self.read()
            if tag == b"E":
                raise ConnectionError(fields(body))
            if tag == b"S":
                name, value, _ = body.split(b"\0", 2)
                self.params[name.decode()] = value.decode()
            if tag == b"Z":
                break

    def read(self):
        """The next message as (tag, body); (None, None) when the server closed the connection."""
        while len(self.buf) < 5 or len(self.buf) < 1 + struct.unpack("!i", self.buf[1:5])[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None, None
            self.buf += chunk
        length = struct.unpack("!i", self.buf[1:5])[0]
        tag, body = self.buf[:1], self.buf[5:1 + length]
        self.buf = self.buf[1 + length:]
        return tag, body

    def send(self, data: bytes):
        self.sock.sendall(data)

    def query(self, sql: str):
        self.send(message(b"Q", sql.encode() + b"\0"))

    def until_ready(self):
        """Messages up to and including ReadyForQuery (or the close)."""
        out = []
        while True:
            tag, body = self.read()
            out.append((tag, body))
            if tag in (b"Z", None):
                return out

    def close(self):
        self.sock.close()


def fields(body: bytes) -> dict:
    """The fields of an ErrorResponse/NoticeResponse body, keyed by their one-letter codes."""
    out = {}
    for part in body.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode(errors="replace")
    return out
