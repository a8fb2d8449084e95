"""Process set-up of fedi serve and fedi worker (fedi.runtime)."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest

from fedi.runtime import raise_open_files


@pytest.fixture
def limits() -> Iterator[tuple[int, int]]:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield before
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_open_files_are_raised_for_a_fan_out_within_the_hard_limit(
    limits: tuple[int, int],
) -> None:
    _, hard = limits
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    wanted = 512 if hard == resource.RLIM_INFINITY else min(512, hard)
    assert raise_open_files(512) == wanted
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (wanted, hard)
    # Never lowered, and never past the hard limit.
    assert raise_open_files(300) == wanted
    if hard != resource.RLIM_INFINITY:
        assert raise_open_files(hard + 1000) == hard
