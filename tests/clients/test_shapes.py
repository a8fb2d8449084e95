"""The entity checks of tests/clients/shapes.py refuse what a strict client would refuse."""

from __future__ import annotations

from typing import Any

import pytest

from tests.clients import shapes


def account(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {key: "x" for key in shapes.ACCOUNT}
    base.update(id="1", fields=[], emojis=[], locked=False, bot=False, group=False)
    return {**base, **changes}


def status(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {key: None for key in shapes.STATUS}
    base.update(id="7", account=account(), visibility="public", content="<p>hi</p>")
    return {**base, **changes}


def test_a_whole_status_passes() -> None:
    shapes.check_status(status())
    shapes.check_status(status(reblog=status(id="8")))


@pytest.mark.parametrize("bad", [
    status(visibility="members"),  # Ice Cubes fails the whole status on a fifth value
    status(id=7),  # ids are strings
    {k: v for k, v in status().items() if k != "spoiler_text"},
    status(account=account(avatar=None)),  # never null: a default image
    status(reblog=status(visibility="group")),
])
def test_what_a_strict_client_refuses_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(AssertionError):
        shapes.check_status(bad)
