"""The inbox's parse-and-verify pipeline under atheris (libFuzzer) for a bounded number of runs.

The harness (atheris_inbox.py) runs in a subprocess, so a crash cannot take pytest down with
it. Seeds include the inputs that used to break the inbox (deep nesting, a 5,000-digit
number, UTF-16, a lone surrogate), each validly signed; libFuzzer mutates from there.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("atheris_inbox.py")
RUNS = int(os.environ.get("FEDI_FUZZ_RUNS", "4000"))
ACTOR = "http://remote.test/users/alice"
FOLLOW = (
    f'{{"id":"{ACTOR}/a/1","type":"Follow","actor":"{ACTOR}",'
    '"object":"http://fuzz.test/groups/cats"}'
)
SIGNED = b"\x01"  # the harness's first choice: sign the body validly (ConsumeBool reads 1)
SEEDS = {
    "follow": SIGNED + FOLLOW.encode(),
    "unsigned": b"\x00" + b'keyId="%s#main-key",created=1e400,signature="AA=="' % ACTOR.encode(),
    "deep": SIGNED + FOLLOW[:-1].encode() + b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
    "long_number": SIGNED + FOLLOW[:-1].encode() + b',"x":' + b"9" * 5000 + b"}",
    "utf16": SIGNED + FOLLOW.encode("utf-16"),
    "surrogate": SIGNED + FOLLOW[:-1].encode() + b',"x":"\\ud800"}',
}

if importlib.util.find_spec("atheris") is None:
    # The test extras install atheris wherever a wheel exists; it must run there.
    if platform.system() == "Linux" and platform.machine() == "x86_64":
        pytest.fail("atheris is missing: pip install -e '.[test]'", pytrace=False)
    pytest.skip(f"no atheris wheel for {platform.system()} {platform.machine()}",
                allow_module_level=True)


def test_inbox_parse_and_verify_survives_atheris(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, seed in SEEDS.items():
        (corpus / name).write_bytes(seed)
    result = subprocess.run(
        [sys.executable, str(HARNESS), f"-runs={RUNS}", "-seed=1", "-max_len=65536",
         "-rss_limit_mb=2048", f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2],
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert f"Done {RUNS} runs" in output, output[-2000:]
    assert "Traceback" not in output and "Uncaught Python exception" not in output, output[-4000:]
