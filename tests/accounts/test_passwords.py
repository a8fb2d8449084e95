"""Password hashing parameters, policy, and rehash on login when the cost is raised."""

from __future__ import annotations

import logging

import pytest
from argon2 import extract_parameters
from argon2.low_level import Type
from sqlalchemy import select

from fedi.accounts.passwords import Hasher, check_password
from fedi.config import load_settings
from fedi.errors import ValidationError
from fedi.store.models import Account, Actor
from tests.accounts.support import PASSWORD, app, log_in, sign_up


async def _hash_of(fedi: object, name: str) -> str:
    async with fedi.services.sessionmaker() as session:  # type: ignore[attr-defined]
        account = (await session.execute(
            select(Account).join(Actor, Actor.id == Account.actor_id)
            .where(Actor.username == name))).scalar_one()
        assert account.password_hash
        return account.password_hash


async def test_hashes_are_argon2id_with_the_configured_cost(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # fedi's own loggers at every level, the rest as a server runs them (INFO).
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="fedi")
    async with app(database_url, password_time_cost=2, password_memory_kib=4096) as fedi:
        await sign_up(fedi.http, "ann")
        encoded = await _hash_of(fedi, "ann")
        params = extract_parameters(encoded)
        assert encoded.startswith("$argon2id$")
        assert params.type is Type.ID
        assert (params.time_cost, params.memory_cost) == (2, 4096)
        assert PASSWORD not in encoded
    # Raise the cost: the next login rehashes with the new parameters.
    async with app(database_url, password_time_cost=3, password_memory_kib=8192) as fedi:
        assert (await log_in(fedi.http, "ann")).status_code == 303
        params = extract_parameters(await _hash_of(fedi, "ann"))
        assert (params.time_cost, params.memory_cost) == (3, 8192)
        rehashed = await _hash_of(fedi, "ann")
    # Neither the password nor its hash is ever logged.
    assert PASSWORD not in caplog.text and rehashed not in caplog.text
    assert encoded not in caplog.text


def test_defaults_come_from_settings() -> None:
    settings = load_settings({"FEDI_PASSWORD_TIME_COST": "4",
                              "FEDI_PASSWORD_MEMORY_KIB": "131072"})
    assert (settings.password_time_cost, settings.password_memory_kib) == (4, 131072)
    default = load_settings({})
    assert (default.password_time_cost, default.password_memory_kib) == (3, 65_536)


def test_policy() -> None:
    assert check_password("x" * 10, "ann") == "x" * 10
    assert check_password("x" * 1024, "ann")
    for bad, why in (("x" * 9, "too short"), ("x" * 1025, "too long"),
                     ("AnnAnnAnnA", "user name")):
        with pytest.raises(ValidationError, match=why):
            check_password(bad, "annannanna")


def test_verify_rejects_wrong_and_missing_hashes() -> None:
    hasher = Hasher(time_cost=1, memory_kib=1024)
    encoded = hasher.hash("a long enough password")
    assert hasher.verify(encoded, "a long enough password")
    assert not hasher.verify(encoded, "a long enough passworD")
    assert not hasher.verify(None, "a long enough password")
    assert not hasher.verify("not a hash", "a long enough password")
