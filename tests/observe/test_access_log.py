"""The access log and the application log of a running `fedi serve` as JSON lines
(FEDI_LOG_FORMAT=json) or text, without secrets (issue 11 item 3)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from tests.support.instance import FediInstance

pytestmark = pytest.mark.federation

SECRETS = {
    "query": "qTok3nSecret9xY",
    "authorization": "Bearer aUth7Secret4Zq",
    "cookie": "session=c00kieSecret8Wv",
    "signature": 'keyId="https://x.example/k",signature="s1gnatureSecret2Rt"',
}
ACCESS_FIELDS = {"method", "route", "status", "duration_ms", "remote"}


class Serve:
    """`fedi serve` of an instance with its standard error (the logs) in a file of its own;
    standard output carries the CLI's own lines (where it listens)."""

    def __init__(self, a: FediInstance, env: dict[str, str]) -> None:
        self.a = a
        self.stderr_path = a.workdir / "serve.stderr"
        fd = a._listener.fileno()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fedi", "serve", "--fd", str(fd)],
            env={**a.env, **env}, cwd=a.workdir, pass_fds=(fd,),
            stdout=subprocess.DEVNULL, stderr=self.stderr_path.open("wb"),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.stderr()
            try:
                if httpx.get(f"{a.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"fedi serve did not start:\n{self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> str:
        self.process.terminate()
        self.process.wait(timeout=30)
        return self.stderr()


def requests_with_secrets(base_url: str) -> None:
    with httpx.Client() as http:
        http.get(f"{base_url}/groups/nobody?token={SECRETS['query']}&x=1",
                 headers={"Authorization": SECRETS["authorization"],
                          "Cookie": SECRETS["cookie"]})
        http.post(f"{base_url}/inbox?token={SECRETS['query']}", content=b"{}", headers={
            "Content-Type": "application/activity+json", "Signature": SECRETS["signature"],
            "Authorization": SECRETS["authorization"]})
        http.get(f"{base_url}/.well-known/nodeinfo")
        http.get(f"{base_url}/no/such/page/{SECRETS['query']}")


def assert_no_secrets(text: str) -> None:
    for secret in ("qTok3nSecret9xY", "aUth7Secret4Zq", "c00kieSecret8Wv", "s1gnatureSecret2Rt"):
        assert secret not in text, f"{secret} leaked into the log:\n{text}"


@pytest.fixture
def instance(instances: list[FediInstance]) -> FediInstance:
    return instances[0]


def test_json_logs_are_one_object_per_line_and_keep_no_secrets(instance: FediInstance) -> None:
    serve = Serve(instance, {"FEDI_LOG_FORMAT": "json"})
    requests_with_secrets(instance.base_url)
    text = serve.stop()
    lines = [line for line in text.splitlines() if line.strip()]
    entries: list[dict[str, Any]] = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n{text}") from None
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    # Application lines (the migration that `serve` ran) are JSON too.
    assert any(entry["logger"].startswith("alembic") for entry in entries), text
    access = [entry for entry in entries if entry["logger"] == "fedi.access"]
    seen = {(e["method"], e["route"], e["status"]) for e in access}
    assert ("GET", "/groups/{name:str}", 404) in seen, seen
    assert ("POST", "/inbox", 401) in seen, seen
    assert ("GET", "/.well-known/nodeinfo", 200) in seen, seen
    assert ("GET", "unmatched", 404) in seen, seen
    for entry in access:
        assert ACCESS_FIELDS <= entry.keys(), entry
        assert entry["remote"] == "127.0.0.1"
        assert isinstance(entry["duration_ms"], float | int) and entry["duration_ms"] >= 0
    assert_no_secrets(text)
    assert "Traceback" not in text


def test_text_access_log_and_turning_it_off(instance: FediInstance) -> None:
    serve = Serve(instance, {})
    requests_with_secrets(instance.base_url)
    text = serve.stop()
    access = [line for line in text.splitlines() if " fedi.access: " in line]
    assert any(" fedi.access: POST /inbox 401 " in line and line.endswith("ms 127.0.0.1")
               for line in access), text
    assert any(" GET /.well-known/nodeinfo 200 " in line and line.endswith("ms 127.0.0.1")
               for line in access), text
    assert_no_secrets(text)

    quiet = Serve(instance, {"FEDI_ACCESS_LOG": "0"})
    requests_with_secrets(instance.base_url)
    assert " fedi.access: " not in quiet.stop()


def test_a_bad_log_format_is_one_line(instance: FediInstance) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "fedi", "serve"], env={**instance.env, "FEDI_LOG_FORMAT": "xml"},
        cwd=instance.workdir, capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "fedi: error: FEDI_LOG_FORMAT='xml' must be one of: text, json"
    )
