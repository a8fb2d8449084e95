"""POST /api/v1/reports files the same report as the web's form: the group's moderators see
it, with the post; what cannot be reported is a 422 or 404 that files nothing."""

from __future__ import annotations

import json

from sqlalchemy import select

from fedi.store.models import Report
from tests.api.support import (
    api_app,
    client,
    join_group,
    make_group,
    make_user,
    token_for,
    write_post,
)
from tests.support.app import InProcess


async def _reports(fedi: InProcess) -> list[Report]:
    async with fedi.services.sessionmaker() as session:
        return list((await session.execute(select(Report))).scalars())


async def test_a_member_reports_a_post_and_bad_reports_file_nothing(database_url: str) -> None:
    async with api_app(database_url) as fedi:
        await make_user(fedi, "owner")
        group = await make_group(fedi, "town", "owner")
        await join_group(fedi, "mia", group)
        await join_group(fedi, "troll", group)
        bad = await write_post(fedi, "troll", group, "@town buy my stuff")
        secret = await write_post(fedi, "owner", group, "@town members", visibility="members")
        await make_user(fedi, "nick")
        troll_id = str(bad.author_id)
        async with client(fedi, await token_for(fedi, "mia")) as http:
            answer = await http.post("/api/v1/reports", json={
                "account_id": troll_id, "status_ids": [str(bad.id)], "comment": "spam",
                "category": "spam"})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["status_ids"] == [str(bad.id)] and body["category"] == "spam"
            assert body["target_account"]["id"] == troll_id
            assert body["action_taken"] is False
            filed = await _reports(fedi)
            assert len(filed) == 1 and filed[0].comment == "spam"
            assert json.loads(filed[0].post_uris) == [bad.uri]
            assert filed[0].group_id == group.id
            # What cannot be reported files nothing.
            for fields, status in [
                ({"account_id": troll_id}, 422),  # no status
                ({"status_ids": [str(bad.id)]}, 422),  # no account
                ({"account_id": troll_id, "status_ids": [str(secret.id)]}, 422),  # not theirs
                ({"account_id": troll_id, "status_ids": [str(bad.id)], "category": "x"}, 422),
                ({"account_id": "999999", "status_ids": [str(bad.id)]}, 404),
            ]:
                refused = await http.post("/api/v1/reports", json=fields)
                assert refused.status_code == status, (fields, refused.text)
                assert "error" in refused.json()
        async with client(fedi, await token_for(fedi, "nick")) as http:
            # A post the reporter cannot see is not found, as everywhere.
            hidden = await http.post("/api/v1/reports", data={
                "account_id": str(secret.author_id), "status_ids[]": str(secret.id)})
            assert hidden.status_code == 404
        async with client(fedi, await token_for(fedi, "mia", "read")) as http:
            assert (await http.post("/api/v1/reports", json={
                "account_id": troll_id, "status_ids": [str(bad.id)]})).status_code == 403
        assert len(await _reports(fedi)) == 1
