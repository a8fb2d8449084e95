"""Real Mastodon clients against real fedi servers (issue 10).

Both tests start two `fedi serve` processes (the `instances` fixture of tests/conftest.py)
and drive the client API with a third-party client library: Mastodon.py in process,
masto.js on Node 22 (tests/clients/masto_js, installed by scripts/install-client-deps.sh).
The consent page is driven in Debian's Chromium as tests/browser does. Nothing here skips:
a missing client, Node or browser fails with what to install.
"""

from __future__ import annotations

import pytest

from tests.clients.support import World, start_world
from tests.support.instance import FediInstance


@pytest.fixture
async def world(instances: list[FediInstance]) -> World:
    """A (tess, rory) and B (bo, the open group club, the private group quiet), both serving
    with their workers."""
    return await start_world(instances)
