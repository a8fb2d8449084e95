"""The delivery POST path (fedi.activitypub.poster) against raw loopback servers that answer
byte for byte as scripted: keep-alive, answers that end the connection, idle connections the
server dropped, bodies past the cap, interim answers, the address guard and the timeouts."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from yarl import URL

from fedi.activitypub import poster as poster_module
from fedi.activitypub.poster import ConnectError, Poster, RefusedAddress
from fedi.errors import FetchError
from tests.support.ports import port_of, reserve_port

OK = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok"

# (index of the request on this server, from 0) -> the bytes to answer, or None: no answer
Answers = Callable[[int], bytes | None]


@dataclass
class RawServer:
    """Reads whole requests (Content-Length bodies) and writes the scripted answer bytes."""

    answers: Answers = lambda index: OK
    close_after_answer: bool = False  # the server ends the connection after each answer
    requests: list[bytes] = field(default_factory=list)  # each request's head
    connections: int = 0
    closed_by_peer: int = 0
    tls: ssl.SSLContext | None = None

    async def start(self) -> None:
        self._sock = reserve_port()
        self._sock.listen()
        self._server = await asyncio.start_server(self._serve, sock=self._sock, ssl=self.tls)

    async def stop(self) -> None:
        self._server.close()
        self._sock.close()

    def url(self, path: str = "/inbox", host: str = "127.0.0.1") -> URL:
        scheme = "https" if self.tls is not None else "http"
        return URL(f"{scheme}://{host}:{port_of(self._sock)}{path}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.closed_by_peer += 1
                    return
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                index = len(self.requests)
                self.requests.append(head)
                answer = self.answers(index)
                if answer is None:
                    await asyncio.sleep(3600)
                    return
                writer.write(answer)
                await writer.drain()
                if self.close_after_answer:
                    return
        except ConnectionError:
            self.closed_by_peer += 1
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    raw = RawServer()
    await raw.start()
    yield raw
    await raw.stop()


@pytest.fixture
async def poster() -> AsyncIterator[Poster]:
    made = Poster(allow_private=True, connect_timeout=2.0, total_timeout=2.0, body_cap=1000,
                  user_agent="fedi/test")
    yield made
    await made.close()


async def post(poster: Poster, url: URL, body: bytes = b"{}") -> poster_module.Answer:
    return await poster.post(url, {"Content-Type": "application/activity+json"}, body)


async def test_one_connection_serves_requests_one_after_another(
    server: RawServer, poster: Poster
) -> None:
    for _ in range(3):
        answer = await post(poster, server.url())
        assert (answer.status, answer.body) == (202, b"ok")
    assert server.connections == 1
    head = server.requests[0].decode()
    assert head.startswith("POST /inbox HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.url().port}\r\n" in head
    assert "Content-Length: 2\r\n" in head


async def test_an_answer_that_ends_the_connection_is_not_reused(
    server: RawServer, poster: Poster
) -> None:
    server.answers = lambda index: (
        b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    await post(poster, server.url())
    await post(poster, server.url())
    assert server.connections == 2


async def test_an_idle_connection_the_server_dropped_is_replaced(
    server: RawServer, poster: Poster
) -> None:
    server.close_after_answer = True  # as a server whose keep-alive timeout is short
    assert (await post(poster, server.url())).status == 202
    await asyncio.sleep(0.05)  # the close reaches the idle connection
    assert (await post(poster, server.url())).status == 202
    assert (server.connections, len(server.requests)) == (2, 2)


async def test_a_connection_lost_as_the_request_is_sent_is_retried_once_on_a_new_one(
    server: RawServer, poster: Poster
) -> None:
    await post(poster, server.url())
    idle = next(iter(poster._order))
    # Aborted now, its end is seen only on the loop's next turn: the pool hands it out.
    idle.transport.abort()  # type: ignore[union-attr]
    assert (await post(poster, server.url())).status == 202
    assert server.connections == 2


async def test_a_body_past_the_cap_is_cut_and_its_connection_closed(
    server: RawServer, poster: Poster
) -> None:
    server.answers = lambda index: b"HTTP/1.1 500 Oops\r\nContent-Length: 5000\r\n\r\n" + \
        b"e" * 5000 if index == 0 else OK
    answer = await post(poster, server.url())
    assert (answer.status, answer.body) == (500, b"e" * 1000)
    assert (await post(poster, server.url())).status == 202
    assert server.connections == 2


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 503 No\r\nTransfer-Encoding: chunked\r\nRetry-After: 30\r\n\r\n"
    b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 503 No\r\nContent-Length: 5\r\nRetry-After: 30\r\n\r\nabcde",
])
async def test_chunked_and_interim_answers(server: RawServer, poster: Poster,
                                            answer: bytes) -> None:
    server.answers = lambda index: answer
    got = await post(poster, server.url())
    assert (got.status, got.headers["retry-after"], got.body) == (503, "30", b"abcde")


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 202 Accepted\r\n" + b"X-Filler: " + b"f" * 70_000 + b"\r\n\r\n",
    b"HTTP/1.1 202 Accepted\r\n" + b"X-A: b\r\n" * 20_000 + b"\r\n",
    b"HTTP/1.1 100 Continue\r\nX-A: bbbbbbbb\r\n\r\n" * 10_000,
    b"HTTP/1.1 202 Accepted\r\n" + b"X-Endless: " + b"f" * 3_000_000,  # never ends
])
async def test_answer_headers_past_their_cap_end_the_request(
    server: RawServer, poster: Poster, answer: bytes
) -> None:
    server.answers = lambda index: answer
    with pytest.raises(FetchError, match="headers over"):
        await post(poster, server.url())
    assert poster._order == {}  # the connection is not kept


async def test_a_body_that_ends_with_the_connection(server: RawServer, poster: Poster) -> None:
    server.answers = lambda index: b"HTTP/1.0 202 Accepted\r\n\r\nthe whole body"
    server.close_after_answer = True
    got = await post(poster, server.url())
    assert (got.status, got.body) == (202, b"the whole body")


async def test_unasked_bytes_on_an_idle_connection_drop_it(
    server: RawServer, poster: Poster
) -> None:
    server.answers = lambda index: OK + (b"HTTP/1.1 408 Timeout\r\n\r\n" if index == 0 else b"")
    await post(poster, server.url())
    await asyncio.sleep(0.05)
    assert (await post(poster, server.url())).status == 202  # not the stray 408
    assert server.connections == 2


async def test_a_name_resolving_to_a_forbidden_address_is_refused_before_connecting(
    server: RawServer
) -> None:
    guarded = Poster(allow_private=False, connect_timeout=2.0, total_timeout=2.0,
                     body_cap=1000, user_agent="fedi/test")
    with pytest.raises(RefusedAddress, match=r"private address .*resolved from localhost"):
        await post(guarded, server.url(host="localhost"))
    await guarded.close()
    assert server.connections == 0


async def test_a_header_with_a_line_break_is_refused_before_connecting(
    server: RawServer, poster: Poster
) -> None:
    with pytest.raises(FetchError, match="line break"):
        await poster.post(server.url(), {"X-Evil": "a\r\nHost: elsewhere"}, b"{}")
    assert server.connections == 0


async def test_a_server_that_never_answers_times_out(server: RawServer) -> None:
    server.answers = lambda index: None
    quick = Poster(allow_private=True, connect_timeout=2.0, total_timeout=0.3, body_cap=1000,
                   user_agent="fedi/test")
    with pytest.raises(TimeoutError):
        await post(quick, server.url())
    await quick.close()
    assert quick._order == {}  # the timed-out connection is not kept


async def test_a_refused_connection_is_a_connect_error(poster: Poster) -> None:
    with reserve_port() as closed:  # bound, never listening
        with pytest.raises(ConnectError, match="could not connect"):
            await post(poster, URL(f"http://127.0.0.1:{port_of(closed)}/inbox"))


async def closed_after_one_post_to_each_of_three(poster: Poster) -> list[int]:
    """One POST to each of three servers in turn; how many connections each saw closed."""
    servers = [RawServer() for _ in range(3)]
    for raw in servers:
        await raw.start()
    try:
        for raw in servers:
            await post(poster, raw.url())
        await asyncio.sleep(0.05)
        return [raw.closed_by_peer for raw in servers]
    finally:
        for raw in servers:
            await raw.stop()


async def test_past_the_idle_limit_the_oldest_connection_is_closed(
    monkeypatch: pytest.MonkeyPatch, poster: Poster
) -> None:
    monkeypatch.setattr(poster_module, "MAX_IDLE", 2)
    assert await closed_after_one_post_to_each_of_three(poster) == [1, 0, 0]
    assert len(poster._order) == 2


async def test_an_idle_connection_is_closed_in_time_without_more_traffic(
    monkeypatch: pytest.MonkeyPatch, poster: Poster, server: RawServer
) -> None:
    """A fan-out leaves a connection open to each member server; they are closed once idle
    for IDLE_SECONDS even if nothing is sent again (each holds a descriptor, here and there)."""
    monkeypatch.setattr(poster_module, "IDLE_SECONDS", 0.2)
    await post(poster, server.url())
    await asyncio.sleep(0.05)
    assert server.closed_by_peer == 0 and len(poster._order) == 1  # kept for reuse
    await post(poster, server.url())  # reused: the idle time starts again
    assert server.connections == 1
    await asyncio.sleep(0.5)
    assert server.closed_by_peer == 1
    assert len(poster._order) == 0


async def test_idle_connections_stay_within_a_quarter_of_the_open_file_limit(
    monkeypatch: pytest.MonkeyPatch, poster: Poster
) -> None:
    monkeypatch.setattr("fedi.activitypub.poster.resource.getrlimit", lambda _: (4, 4))  # 1 idle
    assert await closed_after_one_post_to_each_of_three(poster) == [1, 1, 0]
    assert len(poster._order) == 1


def test_it_runs_on_uvloop() -> None:
    """`fedi serve` runs on uvloop, whose transports are not asyncio.Transport subclasses."""

    async def scenario() -> tuple[int, int]:
        raw = RawServer()
        await raw.start()
        made = Poster(allow_private=True, connect_timeout=2.0, total_timeout=2.0,
                      body_cap=1000, user_agent="fedi/test")
        try:
            statuses = [(await post(made, raw.url())).status for _ in range(2)]
            return statuses[-1], raw.connections
        finally:
            await made.close()
            await raw.stop()

    assert uvloop.run(scenario()) == (202, 1)


def certificate_for_localhost(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for the name localhost: its file, and a server context."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return cert_file, context


@pytest.mark.parametrize("trusted", [True, False])
async def test_https_verifies_the_certificate_for_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trusted: bool
) -> None:
    cert_file, context = certificate_for_localhost(tmp_path)
    if trusted:  # as a CA the system trusts (read when the poster makes its TLS context)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    server = RawServer(tls=context)
    await server.start()
    made = Poster(allow_private=True, connect_timeout=2.0, total_timeout=2.0, body_cap=1000,
                  user_agent="fedi/test")
    try:
        if trusted:
            for _ in range(2):
                assert (await post(made, server.url(host="localhost"))).status == 202
            assert server.connections == 1  # kept alive over TLS too
        else:
            with pytest.raises(ConnectError, match="certificate verify failed"):
                await post(made, server.url(host="localhost"))
            assert server.requests == []
    finally:
        await made.close()
        await server.stop()
