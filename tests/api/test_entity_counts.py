"""An account's counts: fresh on its profile, up to a minute old where it is embedded in a
page of statuses (counting a busy group's posts per page was the cost of every timeline)."""

from __future__ import annotations

from tests.api.support import (
    api_app,
    client,
    join_group,
    make_group,
    make_user,
    token_for,
    write_post,
)


async def test_profiles_count_now_and_embedded_accounts_may_lag(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        group = await make_group(fedi, "cats", "owner")
        await join_group(fedi, "ann", group)
        first = await write_post(fedi, "ann", group, "@cats one")
        async with client(fedi, await token_for(fedi, "ann")) as http:
            shown = (await http.get(f"/api/v1/statuses/{first.id}")).json()
            assert shown["account"]["statuses_count"] == 1
            await write_post(fedi, "ann", group, "@cats two")
            again = (await http.get(f"/api/v1/statuses/{first.id}")).json()
            assert again["account"]["statuses_count"] == 1  # embedded: from the cache
            profile = (await http.get(f"/api/v1/accounts/{shown['account']['id']}")).json()
            assert profile["statuses_count"] == 2  # a profile counts now
