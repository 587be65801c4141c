"""A synchronous PostgreSQL client for one short read, on the standard library alone.

``sigil probe`` runs every minute, and importing asyncio and asyncpg is most of its start-up. This
client speaks the frontend/backend protocol (3.0) over one socket for the connections it can make
exactly as asyncpg would make them: one host (TCP, or a Unix socket directory), the URL's user,
password and database, ``sslmode=disable`` or no sslmode with a server that declines TLS, and trust,
password, md5 or SCRAM-SHA-256 authentication. For anything else it raises :class:`WireUnsupported`
(before connecting when the URL or the environment says so), and the caller uses asyncpg; a refusal
or error of the server is :class:`WireError`, no answer by the deadline :class:`WireTimeout`.

Results come as text and are converted by column type for the types Sigil's tables use; an unknown
type is :class:`WireUnsupported` too, never a guess. The session has asyncpg's settings (UTF-8,
``timezone`` UTC, ``application_name``) plus ``DateStyle=ISO`` and ``extra_float_digits=3``, so
timestamps and doubles read back exactly as asyncpg's binary decoding gives them.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import secrets
import socket
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

#: URL query keys this client reads as asyncpg does; any other key (asyncpg passes unknown ones on as
#: server settings, or reads TLS files) sends the connection to asyncpg.
_QUERY_KEYS = frozenset({"host", "port", "user", "password", "dbname", "database", "sslmode"})
_PROTOCOL = 196608  # 3.0
_SSL_REQUEST = 80877103

_DECODE: dict[int, Callable[[str], Any]] = {
    16: lambda s: s == "t",  # bool
    **dict.fromkeys((20, 21, 23, 26), int),  # int8, int2, int4, oid
    **dict.fromkeys((700, 701), float),  # float4, float8 ('NaN', 'Infinity' included)
    **dict.fromkeys((19, 25, 1042, 1043), str),  # name, text, bpchar, varchar
    1114: datetime.fromisoformat,  # timestamp
    1184: datetime.fromisoformat,  # timestamptz, rendered in the session's UTC
}


class WireUnsupported(Exception):
    """This client cannot make (or read) the connection exactly as asyncpg would: use asyncpg."""


class WireError(Exception):
    """The server refused the connection or the statement (its ``ErrorResponse``)."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(f"{message} (SQLSTATE {sqlstate})")
        self.sqlstate = sqlstate


class WireTimeout(TimeoutError):
    """No answer before the deadline; ``connecting`` tells whether the session had started."""

    def __init__(self, connecting: bool) -> None:
        super().__init__("no answer from the database before the deadline")
        self.connecting = connecting


@dataclass(frozen=True, slots=True)
class WireParams:
    """Where and as whom to connect, resolved from a URL as asyncpg resolves it."""

    host: str
    port: int
    user: str
    password: str | None
    database: str
    #: ``disable`` (plain) or ``prefer`` (ask for TLS; a server offering it goes to asyncpg).
    sslmode: str

    @property
    def unix_socket(self) -> str | None:
        """The socket file when ``host`` is a directory (asyncpg uses no TLS there)."""
        return f"{self.host}/.s.PGSQL.{self.port}" if self.host.startswith("/") else None

    @classmethod
    def from_url(cls, url: str, environ: Mapping[str, str] | None = None) -> WireParams:
        """The parameters of a ``postgresql://`` URL; :class:`WireUnsupported` when asyncpg would
        read more than the URL (``PG*`` variables, a password file) or the URL asks for more than
        this client does (several hosts, TLS options, server settings)."""
        env = os.environ if environ is None else environ
        if any(k.startswith("PG") for k in env):
            raise WireUnsupported("PG* environment variables are set")
        parts = urlsplit(url)
        userinfo, _, hostport = parts.netloc.rpartition("@")
        if "," in hostport:
            raise WireUnsupported("several hosts")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if set(query) - _QUERY_KEYS:
            raise WireUnsupported(f"URL options {sorted(set(query) - _QUERY_KEYS)}")
        user, _, password = (unquote(p) for p in userinfo.partition(":"))
        if hostport.startswith("["):
            host = hostport[1:].partition("]")[0]
        else:
            host = hostport.rpartition(":")[0] if ":" in hostport else hostport
        host = unquote(host) or query.get("host", "")
        if not host:
            raise WireUnsupported("no host: asyncpg would try its default socket directories")
        port = parts.port or int(query.get("port") or 5432)
        user = user or query.get("user") or getpass.getuser()
        database = unquote(parts.path.lstrip("/")) or query.get("dbname") or query.get("database") or user
        # An empty password counts as none, as in asyncpg: then it would read ~/.pgpass.
        pw = password or query.get("password") or None
        if pw is None and (Path.home() / ".pgpass").exists():
            raise WireUnsupported("a password file to read")
        sslmode = query.get("sslmode", "prefer")
        if sslmode not in ("disable", "prefer"):
            raise WireUnsupported(f"sslmode={sslmode}")
        return cls(host, port, user, pw, database, sslmode)


class WireConnection:
    """One session. Every wait ends by ``deadline`` (monotonic seconds): first the one given to
    :meth:`open`, which a caller may move on once connected."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self.deadline = deadline
        self._buffer = b""
        self._ready = False

    @classmethod
    def open(cls, params: WireParams, deadline: float, settings: Mapping[str, str]) -> WireConnection:
        """Connects, authenticates and waits for the server to be ready."""
        sock = _connect(params, deadline)
        conn = cls(sock, deadline)
        try:
            conn._start(params, settings)
        except BaseException:
            conn.close()
            raise
        return conn

    def fetch(self, sql: str, *args: str | int | None) -> list[dict[str, Any]]:
        """The rows of one statement (``$1``... bound to ``args``), columns converted by type."""
        # Unnamed statement and portal; no parameter types given; parameters and results as text.
        bind = [b"\0\0\0\0", struct.pack("!h", len(args))]
        for a in args:
            value = None if a is None else str(a).encode()
            bind.append(struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value)
        bind.append(b"\0\0")  # every result column in text format
        self._send(b"P", b"\0" + sql.encode() + b"\0\0\0")
        self._send(b"B", b"".join(bind))
        self._send(b"D", b"P\0")
        self._send(b"E", b"\0\0\0\0\0")
        self._send(b"S", b"")
        columns: list[tuple[str, int]] = []
        rows: list[dict[str, Any]] = []
        # Raised only once the server is ready again, so the session stays usable after it.
        error: WireError | WireUnsupported | None = None
        while True:
            kind, data = self._receive(connecting=False)
            try:
                if kind == b"T":
                    columns = _row_description(data)
                elif kind == b"D" and error is None:
                    rows.append(_row(data, columns))
            except WireUnsupported as e:
                error = e
            if kind == b"E":
                error = _error(data)
            elif kind == b"Z":
                if error is not None:
                    raise error
                return rows

    def close(self) -> None:
        """Says goodbye (best effort) and closes the socket."""
        try:
            if self._ready:
                self._sock.sendall(b"X\0\0\0\4")
        except OSError:
            pass
        finally:
            self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _start(self, params: WireParams, settings: Mapping[str, str]) -> None:
        if params.sslmode == "prefer" and params.unix_socket is None:
            self._send_raw(struct.pack("!ii", 8, _SSL_REQUEST))
            if self._read(1, connecting=True) != b"N":
                raise WireUnsupported("the server offers TLS")
        options = {
            "user": params.user,
            "database": params.database,
            "client_encoding": "utf-8",
            **settings,
            "DateStyle": "ISO",
            "extra_float_digits": "3",
        }
        packed = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in options.items()) + b"\0"
        self._send_raw(struct.pack("!ii", 8 + len(packed), _PROTOCOL) + packed)
        scram: _Scram | None = None
        while True:
            kind, data = self._receive(connecting=True)
            if kind == b"E":
                raise _error(data)
            if kind == b"Z":
                self._ready = True
                return
            if kind == b"R":
                scram = self._authenticate(params, data, scram)

    def _authenticate(self, params: WireParams, data: bytes, scram: _Scram | None) -> _Scram | None:
        (code,) = struct.unpack("!i", data[:4])
        if code == 0:
            return scram
        if params.password is None or not params.password.isascii() or not params.password.isprintable():
            # No password to give (asyncpg words that), or one that SASLprep might change.
            raise WireUnsupported(f"authentication request {code}")
        password = params.password.encode()
        if code == 3:
            self._send(b"p", password + b"\0")
        elif code == 5:
            inner = hashlib.md5(password + params.user.encode()).hexdigest().encode()
            self._send(b"p", b"md5" + hashlib.md5(inner + data[4:8]).hexdigest().encode() + b"\0")
        elif code == 10 and b"SCRAM-SHA-256\0" in data[4:]:
            scram = _Scram(password)
            first = scram.first()
            self._send(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)
        elif code == 11 and scram is not None:
            self._send(b"p", scram.final(data[4:]))
        elif code == 12 and scram is not None:
            scram.verify(data[4:])
        else:
            raise WireUnsupported(f"authentication request {code}")
        return scram

    def _send(self, kind: bytes, body: bytes) -> None:
        self._send_raw(kind + struct.pack("!i", len(body) + 4) + body)

    def _send_raw(self, data: bytes) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise WireTimeout(not self._ready)
        self._sock.settimeout(left)
        try:
            self._sock.sendall(data)
        except TimeoutError:
            raise WireTimeout(not self._ready) from None

    def _receive(self, connecting: bool) -> tuple[bytes, bytes]:
        """The next message other than notices and parameter reports: its type and body."""
        while True:
            head = self._read(5, connecting)
            (length,) = struct.unpack("!i", head[1:])
            body = self._read(length - 4, connecting)
            if head[:1] not in (b"N", b"S", b"K"):
                return head[:1], body

    def _read(self, n: int, connecting: bool) -> bytes:
        while len(self._buffer) < n:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise WireTimeout(connecting)
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(max(65536, n - len(self._buffer)))
            except TimeoutError:
                raise WireTimeout(connecting) from None
            if not chunk:
                raise ConnectionResetError("the server closed the connection")
            self._buffer += chunk
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out


class _Scram:
    """SCRAM-SHA-256 (RFC 5802, RFC 7677) without channel binding, as PostgreSQL runs it."""

    def __init__(self, password: bytes) -> None:
        self._password = password
        self._nonce = base64.b64encode(secrets.token_bytes(18)).decode()
        self._bare = f"n=,r={self._nonce}"
        self._server_key = b""
        self._message = b""

    def first(self) -> bytes:
        return f"n,,{self._bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        fields = dict(f.split("=", 1) for f in server_first.decode().split(","))
        if not fields["r"].startswith(self._nonce):
            raise WireUnsupported("the server's SCRAM nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac(
            "sha256", self._password, base64.b64decode(fields["s"]), int(fields["i"])
        )
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        without_proof = f"c=biws,r={fields['r']}"
        self._message = f"{self._bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.digest(hashlib.sha256(client_key).digest(), self._message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_key = hmac.digest(salted, b"Server Key", "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        expected = hmac.digest(self._server_key, self._message, "sha256")
        given = dict(f.split("=", 1) for f in server_final.decode().split(",")).get("v", "")
        if not hmac.compare_digest(base64.b64decode(given), expected):
            raise WireUnsupported("the server's SCRAM signature does not verify")


def _connect(params: WireParams, deadline: float) -> socket.socket:
    left = deadline - time.monotonic()
    if left <= 0:
        raise WireTimeout(True)
    try:
        path = params.unix_socket
        if path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(left)
            try:
                sock.connect(path)
            except BaseException:
                sock.close()
                raise
            return sock
        sock = socket.create_connection((params.host, params.port), timeout=left)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    except TimeoutError:
        raise WireTimeout(True) from None


def _row_description(data: bytes) -> list[tuple[str, int]]:
    (n,) = struct.unpack("!h", data[:2])
    out, at = [], 2
    for _ in range(n):
        end = data.index(b"\0", at)
        name = data[at:end].decode()
        (oid,) = struct.unpack("!i", data[end + 7 : end + 11])
        if oid not in _DECODE:
            raise WireUnsupported(f"column {name} of type oid {oid}")
        out.append((name, oid))
        at = end + 19
    return out


def _row(data: bytes, columns: list[tuple[str, int]]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    at = 2
    for name, oid in columns:
        (length,) = struct.unpack("!i", data[at : at + 4])
        at += 4
        if length < 0:
            row[name] = None
            continue
        text = data[at : at + length].decode()
        at += length
        try:
            row[name] = _DECODE[oid](text)
        except ValueError:
            raise WireUnsupported(f"column {name}: {text!r}") from None  # 'infinity', BC dates
    return row


def _error(data: bytes) -> WireError:
    fields = {chunk[:1]: chunk[1:].decode(errors="replace") for chunk in data.split(b"\0") if chunk}
    return WireError(fields.get(b"C", "?????"), fields.get(b"M", "the server gave no message"))
