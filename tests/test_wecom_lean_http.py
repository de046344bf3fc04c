"""The lean HTTP pool under WeCom's API calls, against a real loopback server's raw bytes.

The simulator answers one way (Content-Length, keep-alive); a real WeCom, or a proxy in
front of it, may chunk, gzip, close, or cut an answer short. A scripted server here
writes those answers byte for byte, and each test checks what the client made of them:
the body, whether the connection was kept, and the requests exception the client's
retry policy reads.
"""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
import requests

from bot.wecom.client import _never_sent
from bot.wecom.lean_http import LeanHTTP

Answer = Callable[[socket.socket, bytes], bool]  # write an answer; False closes the connection


class RawServer:
    """Accept connections; read each request (headers and Content-Length body); answer."""

    def __init__(self, answers: list[Answer]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.connections = 0
        self.closed = threading.Event()  # set each time the server closes a connection
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/cgi-bin/x?access_token=t"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                rfile = conn.makefile("rb")
                while self.answers:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = rfile.readline()
                        if not line:
                            break
                        head += line
                    if not head:
                        break
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    request = head + rfile.read(length)
                    self.requests.append(request)
                    if not self.answers.pop(0)(conn, request):
                        break
                rfile.close()
            self.closed.set()

    def close(self) -> None:
        self.sock.close()


def reply(raw: bytes, *, keep: bool = True) -> Answer:
    def answer(conn: socket.socket, _request: bytes) -> bool:
        conn.sendall(raw)
        return keep

    return answer


def json_answer(body: bytes = b'{"errcode":0}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


@pytest.fixture
def http() -> Iterator[LeanHTTP]:
    client = LeanHTTP(verify=True, user_agent="test", pool_size=4)
    yield client
    client.close()


def serve(*answers: Answer) -> RawServer:
    return RawServer(list(answers))


def test_a_kept_connection_carries_the_next_call(http: LeanHTTP) -> None:
    server = serve(reply(json_answer()), reply(json_answer(b'{"errcode":0,"n":2}')))
    try:
        first = http.request("POST", server.url, b'{"a":1}', 5)
        second = http.request("GET", server.url, None, 5)
    finally:
        server.close()
    assert (first.status_code, first.json()) == (200, {"errcode": 0})
    assert second.json() == {"errcode": 0, "n": 2}
    assert server.connections == 1
    post, get = server.requests
    assert post.startswith(b"POST /cgi-bin/x?access_token=t HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 7\r\n" in post
    assert post.endswith(b'\r\n\r\n{"a":1}')
    assert get.startswith(b"GET /cgi-bin/x?access_token=t HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:%d\r\n" % server.port in get


def test_chunked_gzip_and_close_framed_answers_are_read_whole(http: LeanHTTP) -> None:
    body = b'{"errcode":0,"name":"\xe5\xbc\xa0\xe4\xb8\x89"}'
    packed = gzip.compress(body)
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"5;ext=1\r\n"
        + body[:5]
        + b"\r\n%x\r\n" % (len(body) - 5)
        + body[5:]
        + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    zipped = json_answer(packed, b"Content-Encoding: gzip\r\n")
    to_close = b"HTTP/1.0 200 OK\r\n\r\n" + body
    server = serve(
        reply(b"HTTP/1.1 100 Continue\r\n\r\n" + chunked),
        reply(zipped),
        reply(to_close, keep=False),
        reply(json_answer(extra=b"Connection: close\r\n"), keep=False),
        reply(json_answer()),
    )
    try:
        answers = [http.request("GET", server.url, None, 5) for _ in range(5)]
    finally:
        server.close()
    assert [a.content for a in answers[:3]] == [body, body, body]
    assert answers[0].json()["name"] == "张三"
    assert answers[1].headers["content-encoding"] == "gzip"
    # The HTTP/1.0 answer and the one saying close end their connections: a new one each.
    assert server.connections == 3


def test_an_idle_connection_the_server_closed_is_replaced_before_the_call(
    http: LeanHTTP,
) -> None:
    server = serve(reply(json_answer(), keep=False), reply(json_answer()))
    try:
        http.request("GET", server.url, None, 5)  # kept by the client, closed by the server
        assert server.closed.wait(5)
        answer = http.request("POST", server.url, b"{}", 5)
    finally:
        server.close()
    assert answer.json() == {"errcode": 0}
    assert server.connections == 2


def test_an_error_status_is_raised_as_requests_would(http: LeanHTTP) -> None:
    server = serve(reply(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"))
    try:
        answer = http.request("POST", server.url, b"{}", 5)
    finally:
        server.close()
    with pytest.raises(requests.HTTPError, match="502 Bad Gateway for url") as caught:
        answer.raise_for_status()
    assert "access_token" not in str(caught.value)


@pytest.mark.parametrize(
    "raw",
    [
        json_answer(b'{"errcode":0}')[:-4],  # cut short of its Content-Length
        b"SSH-2.0-OpenSSH\r\n",  # not HTTP
        b"",  # closed without an answer
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # bad chunk size
    ],
    ids=["cut-short", "not-http", "closed", "bad-chunk"],
)
def test_a_broken_answer_is_a_connection_error_that_may_have_been_applied(
    http: LeanHTTP, raw: bytes
) -> None:
    server = serve(reply(raw, keep=False))
    try:
        with pytest.raises(requests.ConnectionError) as caught:
            http.request("POST", server.url, b"{}", 5)
    finally:
        server.close()
    assert not isinstance(caught.value, requests.ReadTimeout | requests.ConnectTimeout)
    assert not _never_sent(caught.value)  # the request went out: no blind retry


def test_a_stalled_answer_is_a_read_timeout(http: LeanHTTP) -> None:
    release = threading.Event()

    def stall(_conn: socket.socket, _request: bytes) -> bool:
        release.wait(5)
        return False

    server = serve(stall)
    try:
        with pytest.raises(requests.ReadTimeout):
            http.request("POST", server.url, b"{}", 0.3)
    finally:
        release.set()
        server.close()


def test_a_refused_connection_was_never_sent(http: LeanHTTP) -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(requests.ConnectionError) as caught:
        http.request("POST", f"http://127.0.0.1:{port}/x", b"{}", 2)
    assert _never_sent(caught.value)
