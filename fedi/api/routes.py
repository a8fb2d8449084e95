"""Every route of the client API, in one table (app.py mounts it)."""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from fedi.api import (
    accounts,
    directory,
    instance,
    notifications,
    oauth,
    placeholders,
    relationships,
    reports,
    search,
    statuses,
    streaming,
    timelines,
)

IMAGES = {name: files("fedi").joinpath("static", name).read_bytes()
          for name in ("default-avatar.png", "default-header.png")}


async def default_image(request: Request) -> Response:
    """Accounts without an avatar or header get these: clients never see null images."""
    name = request.path_params["name"]
    if name not in IMAGES:
        return Response(status_code=404)
    return Response(IMAGES[name], media_type="image/png",
                    headers={"Cache-Control": "public, max-age=86400"})


routes: list[BaseRoute] = [
    Route("/static/{name:str}", default_image),
    *oauth.routes, *instance.routes, *accounts.routes, *relationships.routes,
    *search.routes, *statuses.routes, *reports.routes, *directory.routes,
    *timelines.routes, *notifications.routes, *streaming.routes, *placeholders.routes,
]
