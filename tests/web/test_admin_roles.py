"""Every /admin route in the app's route table refuses a logged-out visitor (sent to log in)
and a signed-in member who is not an admin (403), for every method it takes, and changes
nothing. A new /admin route without the check fails here."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select
from starlette.routing import Route

from fedi.app import create_app
from fedi.config import Settings
from fedi.store.models import AuditEntry, InstanceSetting
from tests.accounts.support import app, browser, log_in, sign_up, token_in
from tests.support.app import BASE_URL


def _admin_routes() -> list[tuple[str, str]]:
    settings = Settings(base_url=BASE_URL, database_url="sqlite+aiosqlite://")
    found = []
    for route in create_app(settings, run_worker=False).routes:
        if isinstance(route, Route) and route.path.startswith("/admin"):
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                found.append((method, route.path))
    return found


ROUTES = _admin_routes()


def _filled(path: str) -> str:
    # Values that name something that exists in the test below, so a route cannot pass by 404.
    return re.sub(r"\{[^}]+\}", lambda m: {"{report_id}": "1", "{action}": "suspend"}
                  .get(m.group(0), "member"), path)


def test_the_table_has_the_admin_routes() -> None:
    paths = {path for _, path in ROUTES}
    assert {"/admin", "/admin/users", "/admin/federation/import/apply",
            "/admin/queue/retry"} <= paths
    assert len(ROUTES) >= 25


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_admin_route_refuses_members_and_visitors(
    database_url: str, method: str, path: str
) -> None:
    url = _filled(path)
    async with app(database_url) as fedi:
        async with fedi.services.sessionmaker() as session:
            settings_before = (await session.execute(
                select(func.count()).select_from(InstanceSetting))).scalar_one()
        async with browser(fedi) as visitor:
            answer = await visitor.request(method, url, data={"csrf": "x"})
            assert answer.status_code == 303, (method, url, answer.status_code)
            assert answer.headers["location"].startswith("/login?next=")
        async with browser(fedi) as member:
            assert (await sign_up(member, "member")).status_code == 303
            assert (await log_in(member, "member")).status_code == 303
            token = token_in(await member.get("/settings", follow_redirects=True))
            answer = await member.request(method, url, data={
                "csrf": token, "name": "member", "domain": "bad.example", "severity": "suspend",
                "mode": "open", "host": "bad.example", "action": "none", "note": "n",
                "confirm": "member", "owner": "member",
                "csv": "#domain,#severity\nx.example,suspend\n",
            })
            assert answer.status_code == 403, (method, url, answer.status_code)
            assert "may use the admin pages" in answer.text
        async with fedi.services.sessionmaker() as session:
            assert (await session.execute(select(func.count()).select_from(AuditEntry))
                    ).scalar_one() == 0
            assert (await session.execute(select(func.count()).select_from(InstanceSetting))
                    ).scalar_one() == settings_before
