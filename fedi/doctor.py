"""`fedi doctor`: is this instance healthy, and if not, what to fix.

Each check gives one line, OK, WARN or FAIL with what it found and what to do. Nothing is
changed (no migration, no file created) and no key is shown. The public URL is asked the way
another server asks it (WebFinger and NodeInfo for this instance), with short timeouts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from fedi.activitypub.integrity import public_multibase
from fedi.activitypub.keys import load_private_key
from fedi.actors.local import INSTANCE_USERNAME
from fedi.config import Settings
from fedi.delivery.queue import QueueHealth, queue_health
from fedi.errors import FediError
from fedi.federation.backlog import inbox_figures
from fedi.store import heartbeats
from fedi.store.db import make_engine, make_sessionmaker, missing_sqlite_file
from fedi.store.identity import check_connection, check_identity, summary
from fedi.store.models import Delivery, Host, InboxItem
from fedi.store.schema import schema_state
from fedi.urls import Urls

OK, WARN, FAIL = "OK", "WARN", "FAIL"
TIMEOUT = 5.0
# The clock: remote servers refuse signatures dated minutes off (fedi allows an hour).
SKEW_WARN, SKEW_FAIL = 30.0, 300.0
# Work waiting this long with no worker activity means no worker runs.
STALL_SECONDS = 300.0
# Workers beat every 10 s (fedi.worker_loop); silent this long, none runs.
WORKER_SEEN_SECONDS = 60.0
CERT_WARN_DAYS = 14
NODEINFO_REL = "http://nodeinfo.diaspora.software/ns/schema/"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4} {self.name}: {self.detail}"


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _is_private_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


# -- configuration --------------------------------------------------------------------------

def check_config(settings: Settings) -> Check:
    host = urlsplit(settings.base_url).hostname or ""
    where = "SQLite" if settings.is_sqlite else "PostgreSQL"
    found = f"FEDI_BASE_URL={settings.base_url}, database {where}"
    if _is_private_host(host):
        return Check("config", OK, f"{found} (a local address: development only)")
    if settings.scheme != "https":
        return Check("config", WARN, f"{found}: other servers expect https; put a TLS proxy "
                     "in front and set FEDI_BASE_URL=https://…")
    if settings.allow_private_addresses:
        return Check("config", WARN, f"{found}: FEDI_ALLOW_PRIVATE_ADDRESSES=1 lets remote "
                     "content make this server fetch private addresses; set it to 0")
    return Check("config", OK, found)


# -- database -------------------------------------------------------------------------------

async def _database_checks(settings: Settings) -> list[Check]:
    missing = missing_sqlite_file(settings)
    if missing is not None:
        return [Check("database", FAIL, f"the database file {missing} does not exist: fix "
                      "FEDI_DATABASE_URL, or run `fedi migrate` to create it")]
    try:
        engine = make_engine(settings)
    except FediError as exc:
        return [Check("database", FAIL, exc.reason)]
    try:
        return await _with_engine(engine, settings)
    finally:
        await engine.dispose()


async def _with_engine(engine: AsyncEngine, settings: Settings) -> list[Check]:
    try:
        await asyncio.wait_for(check_connection(engine), TIMEOUT * 2)
    except FediError as exc:
        return [Check("database", FAIL, exc.reason)]
    except TimeoutError:
        return [Check("database", FAIL, "the database did not answer within "
                      f"{TIMEOUT * 2:.0f} s: check FEDI_DATABASE_URL and the server")]
    checks = [Check("database", OK, f"reachable ({engine.dialect.name})")]
    state = await schema_state(engine)
    if not state.at_head:
        checks.append(Check("migrations", FAIL, state.advice()))
        return checks
    checks.append(Check("migrations", OK, f"at head ({state.head})"))
    try:
        await check_identity(engine, settings.base_url)
    except FediError as exc:
        checks.append(Check("identity", FAIL, exc.reason))
        return checks
    checks.append(await check_keys(engine, Urls(settings.base_url)))
    checks.extend(await check_queues(engine))
    return checks


def _key_problem(row: Any) -> str | None:
    """Why a local actor's keys are unusable, or None (the keys themselves never appear)."""
    if not (row.key_id and row.public_key_pem and row.private_key_pem):
        return "has no RSA key"
    try:
        private = load_private_key(row.private_key_pem)
        public = serialization.load_pem_public_key(row.public_key_pem.strip().encode("ascii"))
    except (FediError, ValueError, UnicodeEncodeError):
        return "has an RSA key that cannot be loaded"
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if private.public_key().public_bytes(*spki) != public.public_bytes(*spki):
        return "has RSA private and public keys that do not match"
    if row.assertion_private_pem is None:
        return "has no Ed25519 assertion key"
    try:
        signing = load_private_key(row.assertion_private_pem)
    except FediError:
        return "has an Ed25519 key that cannot be loaded"
    if not isinstance(signing, Ed25519PrivateKey) or \
            public_multibase(signing.public_key()) != row.assertion_public_key:
        return "has Ed25519 private and public keys that do not match"
    return None


async def check_keys(engine: AsyncEngine, urls: Urls) -> Check:
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT uri, key_id, public_key_pem, private_key_pem, assertion_public_key, "
            "assertion_private_pem FROM actors WHERE local ORDER BY id"
        ))).all()
    if not any(row.uri == urls.instance_actor for row in rows):
        return Check("keys", WARN, "there is no instance actor yet; `fedi serve` creates it "
                     "(and its keys) when it first starts")
    problems = [(row.uri, why) for row in rows if (why := _key_problem(row))]
    if problems:
        uri, why = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Check("keys", FAIL, f"{uri} {why}{more}: restore the keys with "
                     "`fedi admin import-keys FILE` or restore a backup")
    return Check("keys", OK, f"{len(rows)} local actors; every RSA and Ed25519 key loads and "
                 "matches its public key (keys not shown)")


async def check_queues(engine: AsyncEngine) -> list[Check]:
    moment = time.time()
    async with make_sessionmaker(engine)() as session:
        health = await queue_health(session, moment)
        inbox_depth, inbox_oldest = await inbox_figures(session)
        seen = await heartbeats.last_seen(session)
        worked = (await session.execute(select(
            select(func.max(InboxItem.processed_at)).scalar_subquery(),
            select(func.max(Delivery.done_at)).scalar_subquery(),
            select(func.max(Host.last_success_at)).scalar_subquery(),
            select(func.max(Host.last_failure_at)).scalar_subquery(),
        ))).one()
    last = max((float(t) for t in worked if t is not None), default=None)
    waiting = [t for t in (inbox_oldest, health.oldest_due_at) if t is not None]
    oldest = moment - min(waiting) if waiting else 0.0
    due = health.due + inbox_depth
    return [_worker(seen, last, due, oldest, moment), _queue(health, inbox_depth, moment)]


def _worker(seen: float | None, last: float | None, due: int, oldest: float,
            moment: float) -> Check:
    alive = seen is not None and moment - seen <= WORKER_SEEN_SECONDS
    heard = f"last seen {_ago(moment - seen)} ago" if seen is not None else "never seen"
    worked = f"last work {_ago(moment - last)} ago" if last is not None else "no work done yet"
    stalled = due > 0 and oldest > STALL_SECONDS and (
        last is None or moment - last > STALL_SECONDS)
    start = "start `fedi worker`, or `fedi serve` without --no-worker"
    if not alive and due:
        return Check("worker", FAIL, f"no worker runs ({heard}) and {due} items are due, the "
                     f"oldest for {_ago(oldest)}: {start}")
    if not alive:
        return Check("worker", WARN, f"no worker runs ({heard}); nothing is due yet, but "
                     f"deliveries will wait: {start}")
    if stalled:
        return Check("worker", FAIL, f"a worker runs ({heard}) but {worked} while {due} "
                     f"items are due, the oldest for {_ago(oldest)}: read the worker's log, "
                     "restart it")
    if due and oldest > STALL_SECONDS:
        return Check("worker", WARN, f"working ({worked}) but {due} items are due, the "
                     f"oldest for {_ago(oldest)}: add workers (`fedi worker`)")
    return Check("worker", OK, f"running ({heard}; {worked}); {due} items due")


def _queue(health: QueueHealth, inbox_depth: int, moment: float) -> Check:
    late = moment - health.oldest_due_at if health.oldest_due_at is not None else 0.0
    found = (f"{health.pending} deliveries pending, {health.due} due"
             + (f" (oldest {_ago(late)})" if health.due else "")
             + f"; {inbox_depth} received activities waiting; {health.hosts_failing} hosts "
             f"failing, {health.hosts_paused} paused, {health.hosts_gone} gone")
    if late > 3600:
        return Check("queue", WARN, f"{found}: deliveries are late; see `fedi admin queue`")
    return Check("queue", OK, found)


# -- the public URL -------------------------------------------------------------------------

def _unreachable(base_url: str, exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        why = f"no answer within {TIMEOUT:.0f} s"
    elif isinstance(exc, httpx.ConnectError) and "CERTIFICATE" in str(exc).upper():
        why = "its TLS certificate is not trusted"
    else:
        why = summary(exc) or type(exc).__name__
    return (f"{base_url} does not answer ({why}): start `fedi serve`, and check that "
            "FEDI_BASE_URL is this instance's public address (DNS, firewall, TLS proxy)")


async def check_public(settings: Settings) -> tuple[list[Check], float | None]:
    """WebFinger and NodeInfo through the public URL, and how far its Date is from ours."""
    base, urls = settings.base_url, Urls(settings.base_url)
    async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False,
                                 headers={"User-Agent": "fedi-doctor"}) as http:
        resource = f"acct:{INSTANCE_USERNAME}@{settings.domain}"
        try:
            sent = time.time()
            found = await http.get(f"{base}/.well-known/webfinger",
                                   params={"resource": resource})
            skew = _skew(found, sent, time.time())
        except httpx.HTTPError as exc:
            return [Check("webfinger", FAIL, _unreachable(base, exc))], None
        checks = [_webfinger(found, urls), await _nodeinfo(http, base)]
    return checks, skew


def _skew(response: httpx.Response, sent: float, received: float) -> float | None:
    raw = response.headers.get("date")
    if not raw:
        return None
    try:
        said = parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError):
        return None
    # The Date is whole seconds, somewhere in the round trip: count only what lies outside.
    if sent - 1 <= said <= received:
        return 0.0
    return said - received if said > received else said - (sent - 1)


def _webfinger(found: httpx.Response, urls: Urls) -> Check:
    where = "GET /.well-known/webfinger for this instance's actor"
    if found.status_code != 200:
        hint = ("no instance actor yet: start `fedi serve` once" if found.status_code == 404
                else "check that the proxy passes requests (and the Host header) to fedi")
        return Check("webfinger", FAIL, f"{where} answered HTTP {found.status_code}: {hint}")
    try:
        links = found.json().get("links", [])
        selves = {link.get("href") for link in links if link.get("rel") == "self"}
    except (ValueError, AttributeError):
        return Check("webfinger", FAIL, f"{where} answered something that is not WebFinger "
                     "JSON: check that the proxy sends /.well-known/ to fedi")
    if urls.instance_actor not in selves:
        named = ", ".join(map(str, selves)) or "none"
        return Check("webfinger", FAIL, f"{where} names another actor ({named}): "
                     "FEDI_BASE_URL or the proxy points at another server")
    return Check("webfinger", OK, f"{urls.base} answers for {urls.instance_actor}")


async def _nodeinfo(http: httpx.AsyncClient, base: str) -> Check:
    try:
        links = (await http.get(f"{base}/.well-known/nodeinfo")).json().get("links", [])
        hrefs = sorted(
            str(link["href"]) for link in links if isinstance(link, dict) and "href" in link
            and str(link.get("rel", "")).startswith(NODEINFO_REL)
        )
        if not hrefs:
            return Check("nodeinfo", FAIL, "/.well-known/nodeinfo lists no NodeInfo document: "
                         "check that the proxy sends /.well-known/ to fedi")
        href = hrefs[-1]  # the newest schema
        if not href.startswith(base + "/"):
            return Check("nodeinfo", FAIL, f"/.well-known/nodeinfo points at {href}, not under "
                         f"{base}: FEDI_BASE_URL does not match the address it is served at")
        document = (await http.get(href)).json()
        software = document["software"]
        return Check("nodeinfo", OK, f"{software['name']} {software['version']}, "
                     f"{document['usage']['users']['total']} users")
    except httpx.HTTPError as exc:
        return Check("nodeinfo", FAIL, _unreachable(base, exc))
    except (ValueError, KeyError, TypeError, AttributeError):
        return Check("nodeinfo", FAIL, "NodeInfo answered something that is not NodeInfo "
                     "JSON: check that the proxy sends /.well-known/ and /nodeinfo/ to fedi")


# -- TLS and clock --------------------------------------------------------------------------

def _peer_certificate(host: str, port: int) -> dict[str, Any]:
    context = ssl.create_default_context()
    with socket.create_connection((host, port), timeout=TIMEOUT) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        cert = tls.getpeercert()
    return dict(cert or {})


async def check_tls(settings: Settings, *, now: float | None = None) -> Check:
    parts = urlsplit(settings.base_url)
    if parts.scheme != "https":
        return Check("tls", OK, "not used (FEDI_BASE_URL is http)")
    host, port = parts.hostname or "", parts.port or 443
    try:
        cert = await asyncio.to_thread(_peer_certificate, host, port)
    except ssl.SSLCertVerificationError as exc:
        return Check("tls", FAIL, f"the certificate of {host} is not valid "
                     f"({exc.verify_message}): renew it, or check the proxy's TLS settings")
    except (OSError, ssl.SSLError) as exc:
        return Check("tls", FAIL, f"no TLS connection to {host}:{port} "
                     f"({exc.strerror or exc}): check that the TLS proxy runs")
    expires = ssl.cert_time_to_seconds(str(cert["notAfter"]))
    days = (expires - (now or time.time())) / 86400
    until = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d")
    if days < CERT_WARN_DAYS:
        return Check("tls", WARN, f"the certificate of {host} expires in {days:.0f} days "
                     f"({until}): check that automatic renewal works")
    return Check("tls", OK, f"certificate of {host} valid until {until} ({days:.0f} days)")


async def _database_skew(settings: Settings) -> float | None:
    """The PostgreSQL server's clock against ours (SQLite has no clock of its own)."""
    if settings.is_sqlite:
        return None
    engine = make_engine(settings)
    try:
        async with engine.connect() as conn:
            before = time.time()
            theirs = float((await conn.execute(
                text("SELECT extract(epoch FROM clock_timestamp())"))).scalar_one())
            after = time.time()
    except Exception:  # reported by the database check already
        return None
    finally:
        await engine.dispose()
    return 0.0 if before - 0.5 <= theirs <= after + 0.5 else theirs - after


def check_clock(http_skew: float | None, db_skew: float | None) -> Check:
    measured = {name: skew for name, skew in (("the public URL's Date", http_skew),
                                              ("the database", db_skew)) if skew is not None}
    if not measured:
        return Check("clock", WARN, "not checked: neither the public URL nor the database "
                     "told its time")
    source, worst = max(measured.items(), key=lambda item: abs(item[1]))
    found = ", ".join(f"{name} {skew:+.0f} s" for name, skew in measured.items())
    fix = ("; keep clocks in sync (systemd-timesyncd or chrony): other servers refuse "
           "signatures dated minutes off")
    if abs(worst) >= SKEW_FAIL:
        return Check("clock", FAIL, f"this machine's clock is off against {source} "
                     f"({found}){fix}")
    if abs(worst) >= SKEW_WARN:
        return Check("clock", WARN, f"this machine's clock drifts ({found}){fix}")
    return Check("clock", OK, f"in sync ({found})")


async def run_checks(settings: Settings) -> list[Check]:
    checks = [check_config(settings)]
    database, (public, http_skew), tls, db_skew = await asyncio.gather(
        _database_checks(settings), check_public(settings), check_tls(settings),
        _database_skew(settings),
    )
    return [*checks, *database, *public, tls, check_clock(http_skew, db_skew)]
