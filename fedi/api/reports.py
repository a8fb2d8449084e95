"""POST /api/v1/reports: the Report button of Mastodon apps, through the same use case as the
web's report form and `fedi report` (federation.reporting.report_post): the group's
moderators and this server's admins get it, and a member-report threshold may hold the post.

fedi's reports are about posts (they go to the moderators of the post's group), so a report
names at least one status; each must be visible to the reporter and by the reported account.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fedi.api.auth import Caller, endpoint, presenter, services_of
from fedi.api.entities import iso
from fedi.api.errors import not_found, unprocessable
from fedi.api.params import read_params
from fedi.api.status_common import acting, status_id, visible_post
from fedi.federation.reporting import report_post
from fedi.moderation.reports import MAX_COMMENT
from fedi.store.models import Actor, Report

MAX_STATUSES = 20
CATEGORIES = ("spam", "legal", "violation", "other")


@endpoint("write:reports")
async def create(request: Request, caller: Caller) -> Response:
    params = await read_params(request)
    account_raw = params.text("account_id")
    if not account_raw:
        raise unprocessable("account_id is required", "account_id")
    comment = params.text("comment", "", max_length=MAX_COMMENT) or ""
    category = params.text("category", "other") or "other"
    if category not in CATEGORIES:
        raise unprocessable(f"category must be one of {', '.join(CATEGORIES)}", "category")
    wanted = params.strings("status_ids")
    if not wanted:
        raise unprocessable("name at least one status (status_ids[]): reports here go to "
                            "the moderators of the post's group", "status_ids")
    if len(wanted) > MAX_STATUSES:
        raise unprocessable(f"at most {MAX_STATUSES} statuses per report", "status_ids")
    async with services_of(request).sessionmaker() as session, session.begin():
        shown = await presenter(session, request, caller)
        target = await session.get(Actor, status_id(account_raw))
        if target is None:
            raise not_found()
        posts = [await visible_post(shown, raw) for raw in dict.fromkeys(wanted)]
        for post in posts:
            if post.author_id != target.id:
                raise unprocessable(f"status {post.id} is not by account {target.id}",
                                    "status_ids")
        reporter = await acting(session, caller.need_person())
        filed: list[Report] = [
            await report_post(session, reporter, post, comment or None) for post in posts]
        account = await shown.account(target)
    first = filed[0]
    return JSONResponse({
        "id": str(first.id), "action_taken": False, "action_taken_at": None,
        "category": category, "comment": comment, "forwarded": False,
        "created_at": iso(first.created_at or time.time()),
        "status_ids": [str(p.id) for p in posts], "rule_ids": None,
        "target_account": account,
    })


routes: list[BaseRoute] = [Route("/api/v1/reports", create, methods=["POST"])]
