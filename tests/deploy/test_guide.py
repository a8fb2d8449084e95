"""deploy/README.md works as written: its `sh checked` blocks run here, unchanged but for
where the system lives.

An admin runs those blocks as root on a Debian machine. Here they run in a sandbox: `/etc`
and `/srv` are moved into a temporary root (the only rewrite), which holds what Debian and
the guide's earlier steps would have put there: systemd's own units, `/etc/caddy`, and
`/srv/fedi` with the checkout's deploy/ files and a venv with fedi installed from the wheel
(so the units' ExecStart is a real `fedi`). `systemd-analyze verify` is given `--root` so
that it resolves the units' paths inside the sandbox. Extracting the commands from the
guide, not copying them here, keeps the two from drifting apart.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "deploy" / "README.md"
CHECKED = re.compile(r"^( *)```sh checked\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def checked_blocks() -> list[str]:
    blocks = []
    for indent, body in CHECKED.findall(GUIDE.read_text()):
        blocks.append("".join(line.removeprefix(indent) + "\n" for line in body.splitlines()))
    return blocks


def block_running(command: str) -> str:
    (block,) = [b for b in checked_blocks() if command in b]
    return block


def compose_command() -> str:
    """`docker compose` (the plugin) where it exists, else the standalone `docker-compose`
    (Debian 12's package), as the guide says."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True,
                            check=False) if shutil.which("docker") else None
    if plugin is not None and plugin.returncode == 0:
        return "docker compose"
    assert shutil.which("docker-compose"), "install docker compose (apt-get install docker-compose)"
    return "docker-compose"


@pytest.fixture
def root(tmp_path: Path, venv: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/caddy").mkdir(parents=True)
    # systemd's own units (targets the fedi units are wanted by, sysinit …), as on Debian.
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    checkout = root / "srv/fedi"
    checkout.mkdir(parents=True)
    shutil.copytree(REPO / "deploy", checkout / "deploy")
    shutil.copytree(venv, checkout / ".venv", symlinks=True)
    return root


def run_in(root: Path, block: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = (
        block.replace("/etc/", f"{root}/etc/").replace("/srv/fedi", f"{root}/srv/fedi")
        .replace("systemd-analyze verify", f"systemd-analyze verify --root={root}")
        .replace("docker compose", compose_command())
    )
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    # Caddy keeps state under $HOME; compose reads no config of this machine's user.
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8",
           "XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config")}
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=root / "srv/fedi",
                          env=env, capture_output=True, text=True, timeout=120)


def test_the_guide_has_its_checks() -> None:
    blocks = "".join(checked_blocks())
    for check in ("systemd-analyze verify fedi-web.service fedi-worker@1.service",
                  "caddy validate --config /etc/caddy/Caddyfile",
                  "docker compose config"):
        assert check in blocks, f"deploy/README.md no longer runs {check!r} in a checked block"


def test_units_install_and_pass_systemd_analyze_verify(root: Path, tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), "install systemd (it provides systemd-analyze)"
    done = run_in(root, block_running("systemd-analyze verify"), tmp_path)
    assert done.returncode == 0, done.stderr
    # verify exits 0 on some warnings (an unknown setting, a bad value): it must say nothing.
    assert done.stdout + done.stderr == ""
    for unit in ("fedi-web.service", "fedi-worker@.service"):
        installed = root / "etc/systemd/system" / unit
        assert installed.read_text() == (REPO / "deploy" / unit).read_text()


def test_caddyfile_installs_and_passes_caddy_validate(root: Path, tmp_path: Path) -> None:
    assert shutil.which("caddy"), "install caddy (apt-get install caddy)"
    done = run_in(root, block_running("caddy validate"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Valid configuration" in done.stdout + done.stderr
    caddyfile = (root / "etc/caddy/Caddyfile").read_text()
    assert "groups.example {" in caddyfile and "reverse_proxy 127.0.0.1:8000" in caddyfile


def test_compose_env_is_written_and_compose_config_passes(root: Path, tmp_path: Path) -> None:
    done = run_in(root, block_running("docker compose config"), tmp_path)
    assert done.returncode == 0, done.stderr
    env = (root / "srv/fedi/deploy/.env").read_text()
    assert "FEDI_DOMAIN=groups.example\n" in env
    assert re.search(r"^POSTGRES_PASSWORD=[0-9a-f]{48}$", env, re.MULTILINE)
    assert (root / "srv/fedi/deploy/.env").stat().st_mode & 0o077 == 0

    # What compose makes of it: the settings reach every fedi service.
    resolved = subprocess.run(
        [*compose_command().split(), "config"], cwd=root / "srv/fedi/deploy",
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        capture_output=True, text=True, check=True, timeout=60,
    )
    services = yaml.safe_load(resolved.stdout)["services"]
    for name in ("migrate", "web", "worker"):
        settings = services[name]["environment"]
        assert settings["FEDI_BASE_URL"] == "https://groups.example"
        assert settings["FEDI_DATABASE_URL"].startswith("postgresql+asyncpg://fedi:")
        assert settings["FEDI_DATABASE_URL"].endswith("@db:5432/fedi")
    assert services["caddy"]["environment"]["FEDI_DOMAIN"] == "groups.example"


def test_compose_config_refuses_a_missing_setting(root: Path, tmp_path: Path) -> None:
    """Without deploy/.env, compose stops and names the setting, instead of starting an
    instance at https:// with an empty password."""
    done = subprocess.run(
        [*compose_command().split(), "config", "--quiet"], cwd=root / "srv/fedi/deploy",
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert done.returncode != 0
    assert "set FEDI_DOMAIN in deploy/.env" in done.stderr or \
        "set POSTGRES_PASSWORD in deploy/.env" in done.stderr, done.stderr
