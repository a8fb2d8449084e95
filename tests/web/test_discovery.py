"""WebFinger, host-meta, NodeInfo, and one URL serving both ActivityPub JSON and HTML."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fedi.actors.local import create_group, create_user
from tests.support.app import BASE_URL, InProcess, running_app

AP = {"Accept": "application/activity+json"}
LD = {"Accept": 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'}


@pytest.fixture
async def fedi(database_url: str) -> AsyncIterator[InProcess]:
    async with running_app(database_url) as running:
        async with running.services.sessionmaker() as session, session.begin():
            await create_user(session, running.services.urls, "alice", display_name="Alice")
            await create_group(
                session, running.services.urls, "cats", owner="alice", title="Cats",
                summary="All about cats",
            )
        yield running


@pytest.mark.parametrize(
    ("resource", "actor"),
    [
        ("acct:cats@fedi.test", "groups/cats"),
        ("acct:alice@fedi.test", "users/alice"),
        ("cats@fedi.test", "groups/cats"),
        (f"{BASE_URL}/groups/cats", "groups/cats"),
        ("acct:fedi.test@fedi.test", "actor"),
    ],
)
async def test_webfinger_finds_users_groups_and_actor_urls(
    fedi: InProcess, resource: str, actor: str
) -> None:
    response = await fedi.http.get("/.well-known/webfinger", params={"resource": resource})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jrd+json")
    jrd = response.json()
    self_links = [link for link in jrd["links"] if link["rel"] == "self"]
    assert self_links == [
        {"rel": "self", "type": "application/activity+json", "href": f"{BASE_URL}/{actor}"}
    ]
    # Mastodon checks that preferredUsername@host resolves back to the same actor.
    document = (await fedi.http.get(f"/{actor}", headers=AP)).json()
    assert jrd["subject"] == f"acct:{document['preferredUsername']}@fedi.test"


@pytest.mark.parametrize(
    "resource", ["acct:nobody@fedi.test", "acct:cats@elsewhere.test", "https://elsewhere.test/x"]
)
async def test_webfinger_unknown_resources_are_404(fedi: InProcess, resource: str) -> None:
    response = await fedi.http.get("/.well-known/webfinger", params={"resource": resource})
    assert response.status_code == 404


async def test_webfinger_without_resource_says_what_is_missing(fedi: InProcess) -> None:
    response = await fedi.http.get("/.well-known/webfinger")
    assert response.status_code == 400
    assert "resource" in response.json()["error"]


async def test_host_meta_points_at_webfinger(fedi: InProcess) -> None:
    response = await fedi.http.get("/.well-known/host-meta")
    assert response.status_code == 200
    assert f'template="{BASE_URL}/.well-known/webfinger?resource={{uri}}"' in response.text


async def test_nodeinfo_20_and_21(fedi: InProcess) -> None:
    links = (await fedi.http.get("/.well-known/nodeinfo")).json()["links"]
    hrefs = {link["rel"]: link["href"] for link in links}
    assert hrefs["http://nodeinfo.diaspora.software/ns/schema/2.0"] == f"{BASE_URL}/nodeinfo/2.0"
    assert hrefs["http://nodeinfo.diaspora.software/ns/schema/2.1"] == f"{BASE_URL}/nodeinfo/2.1"
    assert hrefs["https://www.w3.org/ns/activitystreams#Application"] == f"{BASE_URL}/actor"
    for version in ("2.0", "2.1"):
        info = (await fedi.http.get(f"/nodeinfo/{version}")).json()
        assert info["version"] == version
        assert info["software"]["name"] == "fedi"
        assert info["protocols"] == ["activitypub"]
        assert info["usage"]["users"]["total"] == 1


@pytest.mark.parametrize("accept", [AP, LD])
async def test_group_actor_document(fedi: InProcess, accept: dict[str, str]) -> None:
    response = await fedi.http.get("/groups/cats", headers=accept)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/activity+json")
    group = response.json()
    assert "https://w3id.org/security/v1" in group["@context"]  # Fedify needs it for publicKey
    assert group["type"] == "Group"
    assert group["id"] == f"{BASE_URL}/groups/cats"
    assert group["preferredUsername"] == "cats"
    assert group["name"] == "Cats"
    assert group["summary"] == "All about cats"
    assert group["inbox"] == f"{BASE_URL}/groups/cats/inbox"
    assert group["outbox"] == f"{BASE_URL}/groups/cats/outbox"
    assert group["followers"] == f"{BASE_URL}/groups/cats/followers"
    assert group["endpoints"] == {"sharedInbox": f"{BASE_URL}/inbox"}
    key = group["publicKey"]
    assert key["id"] == f"{BASE_URL}/groups/cats#main-key"
    assert key["owner"] == group["id"]
    assert key["publicKeyPem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert group["manuallyApprovesFollowers"] is False


async def test_user_and_instance_actors(fedi: InProcess) -> None:
    user = (await fedi.http.get("/users/alice", headers=AP)).json()
    assert (user["type"], user["name"], user["preferredUsername"]) == ("Person", "Alice", "alice")
    # FEP-2677: the instance actor is fetchable without a signature.
    instance = (await fedi.http.get("/actor", headers=AP)).json()
    assert instance["type"] == "Application"
    assert instance["id"] == f"{BASE_URL}/actor"
    assert instance["publicKey"]["owner"] == instance["id"]


async def test_same_url_serves_html_to_browsers(fedi: InProcess) -> None:
    response = await fedi.http.get("/groups/cats", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Cats</h1>" in response.text
    assert "@cats@fedi.test" in response.text
    alternate = (
        f'<link rel="alternate" type="application/activity+json" href="{BASE_URL}/groups/cats">'
    )
    assert alternate in response.text


async def test_users_and_groups_do_not_answer_at_each_others_paths(fedi: InProcess) -> None:
    assert (await fedi.http.get("/users/cats", headers=AP)).status_code == 404
    assert (await fedi.http.get("/groups/alice", headers=AP)).status_code == 404
    assert (await fedi.http.get("/groups/nobody", headers=AP)).status_code == 404


async def test_followers_collection_counts_members(fedi: InProcess) -> None:
    collection = (await fedi.http.get("/groups/cats/followers", headers=AP)).json()
    assert collection["type"] == "OrderedCollection"
    assert collection["totalItems"] == 0
