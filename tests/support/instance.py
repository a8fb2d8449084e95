"""A real fedi instance: `fedi serve` in its own process on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.ports import pause, port_of, reserve_port


class FediInstance:
    def __init__(self, name: str, database_url: str, workdir: Path):
        self.name = name
        # The instance's port is held by this socket for the test's life and handed to each
        # `fedi serve` (--fd): no other process can take it between runs or restarts.
        self._listener = reserve_port()
        weakref.finalize(self, self._listener.close)
        self.port = port_of(self._listener)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.domain = f"127.0.0.1:{self.port}"
        self.database_url = database_url
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._others: list[subprocess.Popen[bytes]] = []
        # Set up as an admin does: `fedi init` before any other command (only serve, init
        # and migrate create or migrate a database), unless the test's first command does.
        self._initialised = False

    def _init_first(self, args: Sequence[str]) -> None:
        if self._initialised:
            return
        self._initialised = True
        if tuple(args[:1]) in (("init",), ("migrate",), ("serve",), ("doctor",)) or tuple(
            args[:2]
        ) == ("admin", "restore"):
            return
        self.cli("init")

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            FEDI_BASE_URL=self.base_url,
            FEDI_DATABASE_URL=self.database_url,
            FEDI_ALLOW_PRIVATE_ADDRESSES="1",
            FEDI_INSTANCE_NAME=self.name,
        )
        return env

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        self._init_first(args)
        result = subprocess.run(
            [sys.executable, "-m", "fedi", *args],
            env=self.env, cwd=self.workdir, capture_output=True, text=True, timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"fedi {' '.join(args)} on {self.name} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Another `fedi` process of this instance (e.g. `worker`), logging to the same file."""
        self._init_first(args)
        log = self.log_path.open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "fedi", *args], env={**self.env, **(env or {})},
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
        )
        self._others.append(process)
        return process

    def start(self, extra_args: Sequence[str] = (), env: dict[str, str] | None = None) -> None:
        self._initialised = True  # serve migrates
        log = self.log_path.open("ab")
        fd = self._listener.fileno()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "fedi", "serve", "--fd", str(fd), *extra_args],
            env={**self.env, **(env or {})}, cwd=self.workdir, stdout=log,
            stderr=subprocess.STDOUT, pass_fds=(fd,),
            # Its own process group: kill() takes `--workers N` children down with it.
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/.well-known/nodeinfo", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not start:\n{self.log()}")

    def stop(self) -> None:
        for process in self._others:
            if process.poll() is None:
                process.kill()
                process.wait()
        self._others.clear()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._kill_group(self._process)
        self._process = None
        pause(self._listener)  # down: connections are refused, the port stays ours

    def kill(self) -> None:
        """SIGKILL the server, every process of it."""
        if self._process is not None:
            self._kill_group(self._process)
            self._process = None
        pause(self._listener)

    @staticmethod
    def _kill_group(process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def query(self, sql: str, **params: Any) -> list[Any]:
        engine = create_async_engine(self.database_url, hide_parameters=True)
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(text(sql), params)).all())
        finally:
            await engine.dispose()


async def eventually(
    probe: Callable[[], Any], *, timeout: float = 45.0, interval: float = 0.2, what: str = ""
) -> Any:
    """Poll an async or sync probe until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or probe}; last value {last!r}")
