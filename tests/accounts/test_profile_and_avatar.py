"""Profile settings: display name, bio and avatar, served and federated as Update(actor)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image
from sqlalchemy import select

from fedi.store.models import Actor, Delivery, Follow, OutboundActivity
from tests.accounts.support import app, log_in, sign_up, token_in
from tests.support.app import BASE_URL

AP = {"Accept": "application/activity+json"}


def png(size: tuple[int, int] = (64, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


async def _upload(http: object, data: bytes, name: str = "me.png",
                  kind: str = "image/png") -> object:
    page = await http.get("/settings")  # type: ignore[attr-defined]
    return await http.post(  # type: ignore[attr-defined]
        "/settings/avatar", data={"csrf": token_in(page)}, files={"avatar": (name, data, kind)})


async def _remote_follower(fedi: object, name: str) -> None:
    """A remote actor that follows `name` (as the inbox would have recorded it)."""
    async with fedi.services.sessionmaker() as session, session.begin():  # type: ignore[attr-defined]
        user = (await session.execute(select(Actor).where(Actor.username == name))).scalar_one()
        remote = Actor(uri="http://remote.test/users/rita", type="Person", local=False,
                       username="rita", domain="remote.test",
                       inbox="http://remote.test/users/rita/inbox",
                       shared_inbox="http://remote.test/inbox")
        session.add(remote)
        await session.flush()
        session.add(Follow(follower_id=remote.id, target_id=user.id, state="accepted"))


async def _updates(fedi: object) -> list[tuple[dict[str, object], str]]:
    async with fedi.services.sessionmaker() as session:  # type: ignore[attr-defined]
        rows = (await session.execute(
            select(OutboundActivity.body, Delivery.inbox_url)
            .join(Delivery, Delivery.activity_id == OutboundActivity.id))).all()
    return [(json.loads(body), inbox) for body, inbox in rows
            if json.loads(body)["type"] == "Update"]


async def test_profile_change_is_served_and_federated(database_url: str, tmp_path: Path
                                                      ) -> None:
    async with app(database_url, media_dir=str(tmp_path / "media")) as fedi:
        await sign_up(fedi.http, "ann")
        await log_in(fedi.http, "ann")
        await _remote_follower(fedi, "ann")
        page = await fedi.http.get("/settings")
        saved = await fedi.http.post("/settings/profile", data={
            "csrf": token_in(page), "display_name": "Ann Smith", "bio": "I knit <b>socks</b>"})
        assert saved.status_code == 303
        doc = (await fedi.http.get(f"{BASE_URL}/users/ann", headers=AP)).json()
        assert doc["name"] == "Ann Smith"
        assert doc["summary"] == "<p>I knit &lt;b&gt;socks&lt;/b&gt;</p>"
        [(update, inbox)] = await _updates(fedi)
        assert inbox == "http://remote.test/inbox"
        assert update["actor"] == doc["id"] and update["object"]["name"] == "Ann Smith"  # type: ignore[index]
        too_long = await fedi.http.post("/settings/profile", data={
            "csrf": token_in(page), "display_name": "x" * 101, "bio": ""})
        assert too_long.status_code == 400 and "display name is too long" in too_long.text


async def test_avatar_upload_good_and_bad(database_url: str, tmp_path: Path) -> None:
    media = tmp_path / "media"
    async with app(database_url, media_dir=str(media)) as fedi:
        await sign_up(fedi.http, "ann")
        await log_in(fedi.http, "ann")
        await _remote_follower(fedi, "ann")
        bad = {
            "not an image": (b"<script>alert(1)</script>", "evil.png", "image/png"),
            "truncated": (png()[:60], "cut.png", "image/png"),
            "too large": (b"\x89PNG\r\n\x1a\n" + b"0" * (2 * 1024 * 1024 + 10), "big.png",
                          "image/png"),
            "too many pixels": (png((5000, 10)), "wide.png", "image/png"),
            "svg": (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "a.svg", "image/svg+xml"),
        }
        for what, (data, name, kind) in bad.items():
            refused = await _upload(fedi.http, data, name, kind)
            assert refused.status_code in (400, 413), what  # type: ignore[attr-defined]
            assert "image" in refused.text, what  # type: ignore[attr-defined]
        assert not (media / "avatars").exists() or not any((media / "avatars").iterdir())
        assert await _updates(fedi) == []
        done = await _upload(fedi.http, png(), "../../etc/passwd", "text/plain")
        assert done.status_code == 303  # type: ignore[attr-defined]
        [stored] = list((media / "avatars").iterdir())
        assert stored.suffix == ".png" and "passwd" not in stored.name
        doc = (await fedi.http.get(f"{BASE_URL}/users/ann", headers=AP)).json()
        icon = doc["icon"]["url"]
        assert icon == f"{BASE_URL}/media/avatars/{stored.name}"
        served = await fedi.http.get(icon)
        assert served.status_code == 200 and served.headers["content-type"] == "image/png"
        assert served.headers["x-content-type-options"] == "nosniff"
        assert served.content == png()
        [(update, _)] = await _updates(fedi)
        assert update["object"]["icon"]["url"] == icon  # type: ignore[index]
        for probe in ("../fedi.db", "x.html", "..%2Fsecret.png", "nope.png"):
            assert (await fedi.http.get(f"/media/avatars/{probe}")).status_code == 404
