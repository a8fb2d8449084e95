"""Bad configuration stops start-up with a message that says what to fix."""

from __future__ import annotations

import re

import pytest

from fedi.cli import ENVIRONMENT_HELP
from fedi.config import DEFAULT_BASE_URL, DEFAULT_DATABASE_URL, load_settings
from fedi.errors import ConfigError


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.base_url == DEFAULT_BASE_URL
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.allow_private_addresses is False
    assert settings.domain == "127.0.0.1:8000"


def test_values_are_normalised() -> None:
    settings = load_settings(
        {
            "FEDI_BASE_URL": "https://Groups.Example/",
            "FEDI_DATABASE_URL": "postgres://fedi@db/fedi",
            "FEDI_ALLOW_PRIVATE_ADDRESSES": "1",
        }
    )
    assert settings.base_url == "https://groups.example"
    assert settings.database_url == "postgresql+asyncpg://fedi@db/fedi"
    assert settings.allow_private_addresses is True


@pytest.mark.parametrize(
    ("env", "hint"),
    [
        ({"FEDI_BASE_URL": "groups.example"}, "absolute http(s) URL"),
        ({"FEDI_BASE_URL": "ftp://groups.example"}, "absolute http(s) URL"),
        ({"FEDI_BASE_URL": "https://groups.example/fedi"}, "no path"),
        ({"FEDI_DATABASE_URL": "mysql://x"}, "sqlite+aiosqlite:///"),
        ({"FEDI_ALLOW_PRIVATE_ADDRESSES": "maybe"}, "use 1 or 0"),
        ({"FEDI_DELIVERY_CONCURRENCY": "lots"}, "whole number"),
        ({"FEDI_DELIVERY_PER_HOST": "0"}, "at least 1"),
        ({"FEDI_INBOX_BATCH": "0"}, "at least 1"),
    ],
)
def test_bad_values_name_the_variable_and_the_fix(env: dict[str, str], hint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    name = next(iter(env))
    assert name in caught.value.reason
    assert hint in caught.value.reason


def test_the_help_states_the_defaults_the_settings_have() -> None:
    """`fedi --help` lists each variable with its default: a whole number there must be the
    one fedi uses (it said 128 deliveries in flight while fedi used 256)."""
    defaults = load_settings({})
    stated = {
        name: int(default)
        for name, default in re.findall(
            r"^  (FEDI_\w+)(?:(?!^  FEDI_).)*?\(default (\d+)\)", ENVIRONMENT_HELP, re.S | re.M)
    }
    assert len(stated) >= 15
    for name, default in stated.items():
        assert getattr(defaults, name.removeprefix("FEDI_").lower()) == default, name
