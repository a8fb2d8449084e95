from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fedi.config import Settings
from fedi.services import Services, build_services
from fedi.store.migrate import migrate
from tests.support.databases import create_database, drop_database
from tests.support.instance import FediInstance


@pytest.fixture
async def database_url(tmp_path: Path) -> AsyncIterator[str]:
    url = await create_database(tmp_path)
    yield url
    await drop_database(url)


@pytest.fixture
async def services(database_url: str) -> AsyncIterator[Services]:
    """The services of one fedi, in process, on a migrated database of its own, started."""
    made = build_services(Settings(base_url="http://fedi.test", database_url=database_url))
    await migrate(made.engine)
    await made.start()
    yield made
    await made.close()


@pytest.fixture
async def instances(tmp_path: Path) -> AsyncIterator[list[FediInstance]]:
    """Three fedi instances (a, b, c), each with its own database; tests start what they use."""
    created: list[FediInstance] = []
    for label in ("a", "b", "c"):
        workdir = tmp_path / label
        workdir.mkdir()
        created.append(FediInstance(label, await create_database(workdir, label), workdir))
    yield created
    for instance in created:
        instance.stop()
    for instance in created:
        await drop_database(instance.database_url)
