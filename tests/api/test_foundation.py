"""The client API's shared parts: scopes, parameters, pagination links, rate limits, CORS
and trailing slashes."""

from __future__ import annotations

import pytest

from fedi.accounts import scopes
from fedi.api.pagination import link_header
from fedi.api.params import Params, _put
from fedi.api.ratelimit import Limiter
from tests.api.support import api_app


def test_a_parent_scope_covers_its_children_and_follow_covers_relationships() -> None:
    granted = scopes.parse("read write:statuses follow")
    assert scopes.covers(granted, "read:statuses")
    assert scopes.covers(granted, "write:statuses")
    assert not scopes.covers(granted, "write:favourites")
    assert scopes.covers(granted, "write:follows")
    assert not scopes.covers(scopes.parse("read"), "write:statuses")
    assert scopes.parse("read+write") == {"read", "write"}
    assert scopes.parse(None) == {"read"}
    with pytest.raises(scopes.ScopeError, match="admin:read"):
        scopes.parse("read admin:read")
    assert scopes.within(scopes.parse("read:statuses"), scopes.parse("read write"))
    assert not scopes.within(scopes.parse("push"), scopes.parse("read write"))


def test_form_arrays_and_objects_collect_as_clients_send_them() -> None:
    values: dict[str, object] = {}
    for key, value in [("media_ids[]", "1"), ("media_ids[]", "2"), ("source[privacy]", "x"),
                       ("poll[options][]", "a"), ("poll[options][]", "b")]:
        _put(values, key, value)
    params = Params(values)
    assert params.strings("media_ids") == ["1", "2"]
    assert params.mapping("source") == {"privacy": "x"}
    assert params.mapping("poll") == {"options": ["a", "b"]}
    assert Params({"limit": "99"}).integer("limit", 20, low=1, high=40) == 40
    assert Params({"x": "true"}).flag("x") is True


def test_link_header_names_next_before_prev_with_the_edges_read() -> None:
    link = link_header("https://h", "/api/v1/timelines/home",
                       Params({"limit": "2", "max_id": "50", "access_token": "s"}), [40, 30])
    assert link == ('<https://h/api/v1/timelines/home?limit=2&max_id=30>; rel="next", '
                    '<https://h/api/v1/timelines/home?limit=2&min_id=40>; rel="prev"')
    assert link_header("https://h", "/x", Params({}), []) is None


def test_a_window_allows_its_limit_then_refuses_until_the_next() -> None:
    limiter = Limiter(limit=2, window=300)
    assert limiter.hit("k", now=600.0)[:2] == (True, 1)
    assert limiter.hit("k", now=601.0)[:2] == (True, 0)
    assert limiter.hit("k", now=602.0)[0] is False
    assert limiter.hit("k", now=900.0)[:2] == (True, 1)


async def test_preflight_and_cors_on_the_api_and_no_redirect_for_a_trailing_slash(
    database_url: str,
) -> None:
    async with api_app(database_url) as fedi:
        answer = await fedi.http.options("/api/v1/timelines/home", headers={
            "Origin": "https://elk.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        assert answer.status_code == 204
        assert answer.headers["access-control-allow-origin"] == "*"
        assert "Authorization" in answer.headers["access-control-allow-headers"]
        missing = await fedi.http.get("/api/v1/nothing-here/", headers={"Origin": "https://x"})
        assert missing.status_code == 404
        assert missing.headers["access-control-allow-origin"] == "*"
        assert "error" in missing.json()
        image = await fedi.http.get("/static/default-avatar.png")
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
