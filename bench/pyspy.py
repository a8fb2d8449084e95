"""Optional sampling profiles with py-spy (``pip install py-spy``; not a project dependency).

py-spy samples a running process from outside, so the profiled server runs at nearly full
speed, and its samples are of threads that are running, not waiting: they show where CPU goes.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# Leaf frames are grouped into these components by the path of their file.
_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("/fedi/", "fedi"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("asyncpg/", "asyncpg"),
    ("aiosqlite/", "aiosqlite"),
    ("sqlite3/", "sqlite3"),
    ("starlette/", "Starlette"),
    ("uvicorn/", "uvicorn"),
    ("httptools/", "httptools"),
    ("cryptography/", "cryptography"),
    ("greenlet/", "greenlet"),
    ("json/", "json"),
    ("asyncio/", "asyncio"),
    ("email/", "email (HTTP dates)"),
    ("uvloop/", "uvloop"),
    ("logging/", "logging"),
    ("urllib/", "urllib"),
)


def available() -> bool:
    return shutil.which("py-spy") is not None


@dataclass
class Recording:
    process: subprocess.Popen[bytes]
    path: Path
    log: Path

    def stop(self) -> None:
        """Ctrl-C makes py-spy write what it has sampled so far."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def record(pid: int, path: Path, rate: int = 250, max_seconds: float = 600.0) -> Recording:
    command = ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--output", str(path),
               "--rate", str(rate), "--nonblocking", "--threads",
               "--duration", str(int(max_seconds))]
    log = path.with_suffix(".log")
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    return Recording(process, path, log)


def _component(file: str) -> str:
    for marker, name in _COMPONENTS:
        if marker in file:
            return name
    return "other (stdlib, C, interpreter)"


def summarize(path: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function, and self share per component."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    components: Counter[str] = Counter()
    total = 0
    for raw in path.read_text(errors="replace").splitlines():
        stack, _, count_text = raw.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("thread (")]
        if not frames:
            continue
        total += count
        names = []
        for frame in frames:
            match = _FRAME.match(frame)
            if match is None:
                names.append((frame, ""))
                continue
            file = match["file"]
            short = "/".join(file.split("/")[-2:])
            names.append((f"{match['func']} ({short}:{match['line'] or '?'})", file))
        own[names[-1][0]] += count
        components[_component(names[-1][1])] += count
        for name in {n for n, _ in names}:
            inclusive[name] += count
    if total == 0:
        return "py-spy recorded no samples"
    lines = [f"{total} samples"]
    lines.append("\n-- self time by component (leaf frame's package)")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in components.most_common()]
    lines.append(f"\n-- top {top} functions by self time")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append(f"\n-- top {top} functions by inclusive time")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)
