"""N fake remote shared inboxes, each a distinct host (its own port on 127.0.0.1).

Started by bench.fanout and bench.serve_fanout as a separate process. Every POST is read in
full, counted, and answered 202 after sleeping the simulated round trip; signatures are not
verified.

With --actor-pem, each server is also a remote server with one member: ``GET /users/member``
answers an actor document (Person, shared inbox ``/inbox``, the public key in that file; all
servers share one key pair, each under its own key id), and NodeInfo names the software Lemmy
(a threaded server: the group sends it every post as Announce(Create)). So fedi can verify the
member's signed Follow (bench.serve_fanout signs and sends it) and deliver to its inbox.

Protocol with the parent: the first stdout line is JSON ``{"ports": [...], "control": P}``;
``GET http://127.0.0.1:P/stats`` returns the counters; ``POST /mark`` with a body sets a
marker, and from then on the wall-clock arrival (time.time()) of every POST whose body
contains the marker is kept and returned by ``/stats`` as ``marked``, and how many of them
came on a connection that had carried no POST before as ``marked_on_new``. The process exits when
its stdin closes (the parent ended) or after --max-seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field

from aiohttp import web

from bench.common import pin, raise_nofile, run


@dataclass
class Counters:
    received: int = 0
    signed: int = 0
    body_bytes: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    first_at: float | None = None
    last_at: float | None = None
    hosts: set[str] = field(default_factory=set)
    marker: bytes | None = None
    marked: list[float] = field(default_factory=list)  # wall-clock arrivals with the marker
    marked_on_new: int = 0  # of those, POSTs on a connection that carried no POST before
    # Connections that carried a POST, as (server port, client port): the sender's kept-alive
    # connections are told from new ones.
    connections: set[tuple[int, int]] = field(default_factory=set)
    actor_fetches: int = 0

    def as_json(self) -> dict[str, object]:
        span = None
        if self.first_at is not None and self.last_at is not None:
            span = self.last_at - self.first_at
        return {
            "received": self.received,
            "signed": self.signed,
            "body_bytes": self.body_bytes,
            "distinct_hosts": len(self.hosts),
            "max_in_flight": self.max_in_flight,
            "arrival_span_s": span,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "marked": self.marked,
            "marked_on_new": self.marked_on_new,
            "connections": len(self.connections),
            "actor_fetches": self.actor_fetches,
        }


def actor_document(host: str, public_pem: str) -> bytes:
    base = f"http://{host}"
    uri = f"{base}/users/member"
    return json.dumps({
        "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
        "id": uri, "type": "Person", "preferredUsername": "member",
        "inbox": f"{uri}/inbox", "outbox": f"{uri}/outbox", "followers": f"{uri}/followers",
        "endpoints": {"sharedInbox": f"{base}/inbox"},
        "publicKey": {"id": f"{uri}#main-key", "owner": uri, "publicKeyPem": public_pem},
    }).encode()


async def serve(
    n: int, rtt: float, max_seconds: float, public_pem: str | None = None, port_base: int = 0
) -> None:
    counters = Counters()

    async def inbox(request: web.BaseRequest) -> web.StreamResponse:
        if request.method == "GET" and public_pem is not None:
            if request.path == "/users/member":
                counters.actor_fetches += 1
                return web.Response(body=actor_document(request.host, public_pem),
                                    content_type="application/activity+json")
            if request.path == "/.well-known/nodeinfo":
                return web.json_response({"links": [{
                    "rel": "http://nodeinfo.diaspora.software/ns/schema/2.1",
                    "href": f"http://{request.host}/nodeinfo/2.1"}]})
            if request.path == "/nodeinfo/2.1":  # a threaded server: it gets Announce(Create)
                return web.json_response({"version": "2.1", "software": {"name": "lemmy"}})
        if request.method != "POST":
            return web.Response(status=405)
        transport = request.transport
        connection = (0, 0) if transport is None else (
            transport.get_extra_info("sockname")[1], transport.get_extra_info("peername")[1])
        new = connection not in counters.connections
        counters.connections.add(connection)
        body = await request.read()
        if counters.marker is not None and counters.marker in body:
            counters.marked.append(time.time())
            counters.marked_on_new += new
        moment = time.monotonic()  # CLOCK_MONOTONIC: comparable with the parent's
        counters.first_at = counters.first_at if counters.first_at is not None else moment
        counters.last_at = moment
        counters.received += 1
        counters.body_bytes += len(body)
        counters.signed += "Signature" in request.headers
        counters.hosts.add(request.host)
        counters.in_flight += 1
        counters.max_in_flight = max(counters.max_in_flight, counters.in_flight)
        try:
            await asyncio.sleep(rtt)
        finally:
            counters.in_flight -= 1
        return web.Response(status=202)

    async def control(request: web.BaseRequest) -> web.StreamResponse:
        if request.method == "POST" and request.path == "/mark":
            counters.marker = await request.read()
            counters.marked = []
            counters.marked_on_new = 0
            return web.Response(status=204)
        return web.json_response(counters.as_json())

    loop = asyncio.get_running_loop()
    inbox_server = web.Server(inbox)
    control_server = web.Server(control)
    listeners: list[asyncio.AbstractServer] = []
    ports: list[int] = []
    candidate = port_base
    while len(ports) < n:
        try:  # from --port-base up, skipping ports in use; 0: any free port
            listener = await loop.create_server(inbox_server, "127.0.0.1", candidate, backlog=64)
        except OSError:
            if not port_base or candidate >= 65535:
                raise
            candidate += 1
            continue
        candidate += 1 if port_base else 0
        listeners.append(listener)
        ports.append(listener.sockets[0].getsockname()[1])
    control_listener = await loop.create_server(control_server, "127.0.0.1", 0)
    listeners.append(control_listener)
    control_port = control_listener.sockets[0].getsockname()[1]
    print(json.dumps({"ports": ports, "control": control_port}), flush=True)

    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        await asyncio.wait_for(reader.read(), timeout=max_seconds)  # EOF: the parent is done
    except TimeoutError:
        print("fake_inboxes: --max-seconds reached, exiting", file=sys.stderr)
    for each in listeners:
        each.close()
    await inbox_server.shutdown(timeout=1.0)
    await control_server.shutdown(timeout=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, required=True, help="number of inboxes (hosts)")
    parser.add_argument("--rtt-ms", type=float, default=100.0, help="delay before answering")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="hard lifetime")
    parser.add_argument("--nice", type=int, default=0, help="scheduling priority adjustment")
    parser.add_argument("--port-base", type=int, default=0,
                        help="listen on free ports from this one up (default: any free port)")
    parser.add_argument("--actor-pem", default=None,
                        help="file with the members' public key PEM: serve /users/member")
    args = parser.parse_args()
    public_pem = None
    if args.actor_pem:
        with open(args.actor_pem) as handle:
            public_pem = handle.read()
    if args.nice:
        os.nice(args.nice)
    raise_nofile(2 * args.n + 256)
    pin(0, args.cpu)
    run(lambda: serve(args.n, args.rtt_ms / 1000.0, args.max_seconds, public_pem,
                      args.port_base),
        use_uvloop=True)


if __name__ == "__main__":
    main()
