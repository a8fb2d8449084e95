"""The dependency direction of ARCHITECTURE.md, held by walking the imports.

A package may import only from packages in lower layers (or its own)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "fedi"

# Layer of each top-level module or package under fedi/.
LAYERS: dict[str, float] = {
    "errors": 0, "config": 0.5, "runtime": 0.5, "types": 0.5, "urls": 0.5, "content": 0.5,
    "metrics": 0.5,  # counters every layer may bump; no fedi imports
    "logs": 0.5,  # logging setup and redaction; no fedi imports
    # privacy may use activitypub's vocabulary helpers (ARCHITECTURE.md).
    "activitypub": 1, "privacy": 1.5,
    "store": 2,
    "live": 2.5,  # live-update events: session hooks and fan-out; no domain knowledge
    "handlers": 3, "actors": 3, "delivery": 3,
    "groups": 4, "moderation": 4, "accounts": 4,
    "federation": 5,
    "worker_loop": 5.5, "services": 6,
    "admin": 5.5,  # admin use cases composed of accounts, groups and moderation (CLI and web)
    "doctor": 6.5,
    "web": 7, "app": 7.5,
    "api": 7.2,  # the client API; its consent page and address rules come from web/
    "cli_common": 7.6, "cli_ops": 7.7,
    "cli_mod": 7.8, "cli_circle": 7.8, "cli_admin": 7.8, "cli_accounts": 7.7, "cli": 8,
    "cli_instance": 7.7,
    "cli_admin_people": 7.7,
    "__main__": 9,
}
# What a layer may not import even if it is lower (protocol and policy stay pure).
FORBIDDEN = {
    "activitypub": {"store", "sqlalchemy", "starlette", "jinja2"},
    "privacy": {"store", "sqlalchemy", "starlette", "jinja2", "aiohttp", "httpx"},
    # Account use cases never see a request: web/ and the client API call them.
    "accounts": {"starlette", "jinja2"},
}


def modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "migrations" not in p.parts)


def component(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path) -> None:
    own = component(path)
    if own == "__init__":
        return
    assert own in LAYERS, f"{own} has no layer; add it to LAYERS"
    for name in imported(path):
        top = name.split(".")[0]
        if top in FORBIDDEN.get(own, set()):
            raise AssertionError(f"{path.name}: {own} must not import {name}")
        if top != "fedi" or name == "fedi":
            continue
        target = name.split(".")[1]
        if target == own:
            continue
        assert LAYERS[target] < LAYERS[own], (
            f"{path.relative_to(ROOT)}: {own} (layer {LAYERS[own]}) imports {name} "
            f"(layer {LAYERS[target]})"
        )
