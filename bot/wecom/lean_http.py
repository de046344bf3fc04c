"""Keep-alive HTTP/1.1 for WeCom's JSON API calls, with only the work those calls need.

A scan makes three WeCom calls, and through urllib3 each spent ~0.3 ms of client CPU
(about half of a call's cost), most of it in layers a JSON call to one host does not use:
the pool manager's key and URL parsing, http.client's header-by-header request building,
and its response headers parsed as an e-mail message (`email.feedparser`), then copied
into urllib3's header dict. Here a request is one `sendall` of a request line and fixed
headers, and the answer is read as HTTP/1.1 frames it: a status line, header lines split
once, then a Content-Length body, a chunked one, or one running to the close.

Connections are pooled per scheme, host and port (LIFO, at most `pool_size` idle ones
kept) and checked before reuse as urllib3 does: an idle socket that reads as ready was
closed or broken by the server, and is replaced. TLS verifies the certificate and host
name against the given CA bundle unless `verify` is False.

Failures are raised as the requests exceptions LeanSession raised for urllib3's, so the
client's policy (retry, "may have taken effect") sees the same thing: a connection that
could not be opened is `requests.ConnectionError` caused by urllib3's
`NewConnectionError` (never sent), a connect that timed out `requests.ConnectTimeout`, a
read that timed out `requests.ReadTimeout`, anything else on the wire — a reset, a close
before or in the answer, an answer that is not HTTP — `requests.ConnectionError`.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import threading
import weakref
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.exceptions import NewConnectionError

_MAX_LINE = 65_536
_MAX_HEADERS = 100
_SAFE = "/?&=%:+,;@!$'()*~#[]"  # already-encoded targets stay as they are


class _BrokenError(Exception):
    """The connection failed after it was open (reset, closed, not HTTP)."""


class _Conn:
    """One open connection and its buffered reader."""

    __slots__ = ("key", "rfile", "sock")

    def __init__(self, key: tuple[str, str, int], sock: socket.socket) -> None:
        self.key = key
        self.sock = sock
        self.rfile = sock.makefile("rb")

    def dropped(self) -> bool:
        """Tell whether the server closed (or wrote junk on) this idle connection."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        try:
            self.rfile.close()
        finally:
            self.sock.close()


class LeanResponse:
    """What wechatpy and the client read of an answer: requests.Response's names."""

    request = None
    encoding = "utf-8"

    def __init__(
        self, url: str, status: int, reason: str, headers: list[tuple[str, str]], content: bytes
    ) -> None:
        self.url = url
        self.status_code = status
        self.reason = reason
        self._headers = headers
        self.content = content

    @property
    def headers(self) -> CaseInsensitiveDict[str]:
        folded: CaseInsensitiveDict[str] = CaseInsensitiveDict()
        for name, value in self._headers:
            folded[name] = f"{folded[name]}, {value}" if name in folded else value
        return folded

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise requests.HTTPError(
                f"{self.status_code} {self.reason} for url: {self.url.split('?', 1)[0]}",
                response=self,  # type: ignore[arg-type]
            )


class LeanHTTP:
    """A small keep-alive pool sending GETs and POSTs of bytes, for WeCom's API."""

    def __init__(self, *, verify: bool | str, user_agent: str, pool_size: int) -> None:
        self._verify = verify
        self._tls: ssl.SSLContext | None = None
        self._pool_size = pool_size
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._fixed = f"User-Agent: {user_agent}\r\nAccept: */*\r\nConnection: keep-alive\r\n"
        # As urllib3's pools: a client dropped without close() still closes its sockets.
        weakref.finalize(self, _close_idle, self._idle, self._lock)

    # --- connections ------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            if self._verify is False:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                bundle = self._verify if isinstance(self._verify, str) else DEFAULT_CA_BUNDLE_PATH
                ctx = ssl.create_default_context(cafile=bundle)
            self._tls = ctx
        return self._tls

    def _take(self, key: tuple[str, str, int]) -> _Conn | None:
        while True:
            with self._lock:
                idle = self._idle.get(key)
                conn = idle.pop() if idle else None
            if conn is None or not conn.dropped():
                return conn
            conn.close()

    def _give_back(self, conn: _Conn) -> None:
        with self._lock:
            idle = self._idle.setdefault(conn.key, [])
            if not self._closed and len(idle) < self._pool_size:
                idle.append(conn)
                return
        conn.close()

    def _open(self, key: tuple[str, str, int], timeout: float | None) -> _Conn:
        scheme, host, port = key
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError as exc:
            raise requests.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            reason = NewConnectionError(None, f"Failed to establish a new connection: {exc}")  # type: ignore[arg-type]
            raise requests.ConnectionError(reason) from reason
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self._context().wrap_socket(sock, server_hostname=host)
        except TimeoutError as exc:
            sock.close()
            raise requests.ConnectTimeout(f"TLS handshake with {host}:{port} timed out") from exc
        except OSError as exc:  # ssl.SSLError included
            sock.close()
            raise requests.ConnectionError(exc) from exc
        return _Conn(key, sock)

    def close(self) -> None:
        """Close every idle connection; connections in use are closed when given back."""
        with self._lock:
            self._closed = True
        _close_idle(self._idle, self._lock)

    # --- one call ---------------------------------------------------------------------

    def request(
        self, method: str, url: str, body: bytes | None, timeout: float | None
    ) -> LeanResponse:
        """Send one request and read its whole answer; raise requests' exceptions."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        if scheme not in ("http", "https") or not host:
            raise requests.exceptions.InvalidURL(f"not an http(s) URL: {url.split('?', 1)[0]}")
        port = parts.port or (443 if scheme == "https" else 80)
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        if not target.isascii() or " " in target:
            target = quote(target, safe=_SAFE)
        host_header = parts.netloc.rsplit("@", 1)[-1]
        method = method.upper()
        head = f"{method} {target} HTTP/1.1\r\nHost: {host_header}\r\n{self._fixed}"
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(body or b'')}\r\n"
        payload = (head + "\r\n").encode("latin-1") + (body or b"")
        key = (scheme, host, port)
        conn = self._take(key) or self._open(key, timeout)
        try:
            conn.sock.settimeout(timeout)
            conn.sock.sendall(payload)
            status, reason, headers, content, reusable = _read_answer(conn.rfile, method)
        except TimeoutError as exc:
            conn.close()
            raise requests.ReadTimeout(f"no answer from {host}:{port} within {timeout}s") from exc
        except (OSError, _BrokenError, ValueError) as exc:
            conn.close()
            raise requests.ConnectionError(exc) from exc
        except BaseException:
            conn.close()
            raise
        if reusable:
            self._give_back(conn)
        else:
            conn.close()
        return LeanResponse(url, status, reason, headers, content)


def _close_idle(idle: dict[tuple[str, str, int], list[_Conn]], lock: threading.Lock) -> None:
    with lock:
        conns = [c for kept in idle.values() for c in kept]
        idle.clear()
    for conn in conns:
        conn.close()


def _read_answer(rfile: Any, method: str) -> tuple[int, str, list[tuple[str, str]], bytes, bool]:
    """Read one HTTP/1.x answer: (status, reason, headers, body, connection reusable)."""
    while True:
        line = rfile.readline(_MAX_LINE + 1)
        if not line:
            raise _BrokenError("connection closed before an answer")
        if len(line) > _MAX_LINE:
            raise _BrokenError("status line too long")
        parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise _BrokenError(f"not an HTTP answer: {line[:40]!r}")
        version, status = parts[0], int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = _read_headers(rfile)
        if not 100 <= status < 200 or status == 101:
            break  # an interim answer (100 Continue) is followed by the real one
    fields = {name.lower(): value for name, value in headers}
    persistent = version == "HTTP/1.1"
    tokens = {t.strip().lower() for t in fields.get("connection", "").split(",")}
    if "close" in tokens:
        persistent = False
    elif "keep-alive" in tokens:
        persistent = True
    if method == "HEAD" or status in (204, 304):
        content = b""
    elif "chunked" in fields.get("transfer-encoding", "").lower():
        content = b"".join(_chunks(rfile))
    elif "content-length" in fields:
        length = fields["content-length"].split(",")[0].strip()
        if not length.isdigit():
            raise _BrokenError(f"bad Content-Length {length!r}")
        content = rfile.read(int(length))
        if len(content) != int(length):
            raise _BrokenError(f"answer cut short: {len(content)} of {length} bytes")
    else:
        content = rfile.read()  # framed by the close
        persistent = False
    coding = fields.get("content-encoding", "").strip().lower()
    if coding in ("gzip", "x-gzip"):
        content = zlib.decompress(content, 16 + zlib.MAX_WBITS)
    elif coding == "deflate":
        try:
            content = zlib.decompress(content)
        except zlib.error:
            content = zlib.decompress(content, -zlib.MAX_WBITS)
    return status, reason, headers, content, persistent


def _read_headers(rfile: Any) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    while True:
        line = rfile.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise _BrokenError("header line too long")
        if line in (b"\r\n", b"\n"):
            return headers
        if not line:
            raise _BrokenError("connection closed in the headers")
        if len(headers) >= _MAX_HEADERS:
            raise _BrokenError("too many headers")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise _BrokenError(f"not a header line: {line[:40]!r}")
        headers.append((name.strip(), value.strip()))


def _chunks(rfile: Any) -> Iterator[bytes]:
    while True:
        line = rfile.readline(_MAX_LINE + 1)
        if not line:
            raise _BrokenError("connection closed in a chunked body")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _BrokenError(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            _read_headers(rfile)  # trailers, then the blank line
            return
        chunk = rfile.read(size)
        if len(chunk) != size or rfile.read(2) not in (b"\r\n",):
            raise _BrokenError("chunk cut short")
        yield chunk
