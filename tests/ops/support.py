"""Running `fedi` as an admin does, with a given configuration, from another directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def fedi(cwd: Path, base_url: str, database_url: str, *args: str,
         **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEDI_BASE_URL": base_url, "FEDI_DATABASE_URL": database_url,
           "FEDI_ALLOW_PRIVATE_ADDRESSES": "1", **extra}
    return subprocess.run([sys.executable, "-m", "fedi", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    """No traceback and no key material in what the command printed."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert "PRIVATE KEY" not in output and "BEGIN" not in output, output
