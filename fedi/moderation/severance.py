"""What a suspension does to what we already hold about a domain.

- follows in both directions between local actors and the domain's actors are deleted
  (memberships of local groups, local users' memberships of its groups, person follows);
- deliveries still queued for its hosts are dropped (state "dropped"), so nothing more goes out;
- activities from it that wait in our inbox queue are not processed;
- its actors' posts are marked deleted (hidden everywhere; `held` says why).

Nothing is sent to the suspended domain: there is no traffic with it any more.

A host is severed only when the rule that decides it (the most specific active one, as the
policy decides) is one of the suspensions being applied, so an exception such as a `noop` on
`sub.example.com` under a suspended `example.com` is respected. Matching runs in Python, with
the policy's own functions, because stored hosts are raw (not normalised).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from fedi.activitypub.parse import host_of
from fedi.delivery.enqueue import queued_written
from fedi.moderation.policy import rule_of
from fedi.privacy.domains import Rule, find_rule, normalise_or_none
from fedi.store.models import Actor, Delivery, DomainBlock, Follow, InboxItem, Post

SUSPENDED_MARK = "domain suspended"


@dataclass
class LinkCounts:
    """Accepted follows with local actors: memberships (a group is followed) and other follows."""

    memberships: int = 0
    follows: int = 0


@dataclass
class Severed:
    memberships: int = 0
    follows: int = 0
    deliveries: int = 0
    posts: int = 0
    inbox_items: int = 0


def deciding_keys(
    hosts: Iterable[str], rules: Mapping[str, Rule], keys: set[str], now: float
) -> dict[str, str]:
    """raw host → the key in `keys` whose suspension decides it (hosts decided otherwise are
    left out)."""
    decided: dict[str, str] = {}
    for host in hosts:
        domain = normalise_or_none(host)
        rule = find_rule(domain, rules, now) if domain is not None else None
        if rule is not None and rule.domain in keys and rule.severity == "suspend":
            decided[host] = rule.domain
    return decided


async def link_counts(session: AsyncSession) -> dict[str, LinkCounts]:
    """Accepted follows between local and remote actors, per remote actor's host."""
    follower = aliased(Actor)
    target = aliased(Actor)
    rows = await session.execute(
        select(follower.local, follower.domain, target.domain, target.type, func.count())
        .select_from(Follow)
        .join(follower, follower.id == Follow.follower_id)
        .join(target, target.id == Follow.target_id)
        .where(Follow.state == "accepted", follower.local != target.local)
        .group_by(follower.local, follower.domain, target.domain, target.type)
    )
    counts: dict[str, LinkCounts] = defaultdict(LinkCounts)
    for follower_local, follower_domain, target_domain, target_type, n in rows.all():
        remote = target_domain if follower_local else follower_domain
        if target_type == "Group":
            counts[remote].memberships += n
        else:
            counts[remote].follows += n
    return counts


async def active_rules(session: AsyncSession) -> dict[str, Rule]:
    return {b.domain: rule_of(b) for b in (await session.execute(select(DomainBlock))).scalars()}


async def sever(session: AsyncSession, key: str, moment: float) -> Severed:
    """Apply the suspension of one (stored) policy key to existing data."""
    return (await sever_many(session, {key}, moment)).get(key, Severed())


async def sever_many(session: AsyncSession, keys: set[str], moment: float) -> dict[str, Severed]:
    """Apply stored suspensions to existing data, in the caller's transaction, per key."""
    results: dict[str, Severed] = defaultdict(Severed)
    if not keys:
        return results
    await session.flush()
    await queued_written(session)  # in an inbox batch, the rows it holds back are queued too
    rules = await active_rules(session)
    hosts = (
        await session.execute(select(Actor.domain).where(Actor.local.is_(False)).distinct())
    ).scalars()
    by_host = deciding_keys(hosts, rules, keys, moment)
    if by_host:
        await _sever_actors(session, by_host, results, moment)
    queued = (
        await session.execute(select(Delivery.host).where(Delivery.state == "pending").distinct())
    ).scalars()
    for host, key in deciding_keys(queued, rules, keys, moment).items():
        dropped = await session.execute(
            update(Delivery)
            .where(Delivery.state == "pending", Delivery.host == host)
            .values(state="dropped", last_error=f"refused: {key} is suspended", done_at=moment,
                    claimed_until=0.0)
            .execution_options(synchronize_session=False)
        )
        results[key].deliveries += dropped.rowcount or 0  # type: ignore[attr-defined]
    waiting = (
        await session.execute(
            select(InboxItem.id, InboxItem.actor_uri).where(InboxItem.state == "new")
        )
    ).all()
    waiting_keys = deciding_keys({host_of(uri) for _, uri in waiting}, rules, keys, moment)
    stale: dict[str, list[int]] = defaultdict(list)
    for item_id, uri in waiting:
        if (deciding := waiting_keys.get(host_of(uri))) is not None:
            stale[deciding].append(item_id)
    for key, ids in stale.items():
        await session.execute(
            update(InboxItem)
            .where(InboxItem.id.in_(ids), InboxItem.state == "new")
            .values(state="done", error=f"refused: {key} is suspended", processed_at=moment)
            .execution_options(synchronize_session=False)
        )
        results[key].inbox_items += len(ids)
    return results


async def _sever_actors(
    session: AsyncSession, by_host: dict[str, str], results: dict[str, Severed], moment: float
) -> None:
    actors = (
        await session.execute(
            select(Actor.id, Actor.domain).where(
                Actor.local.is_(False), Actor.domain.in_(list(by_host))
            )
        )
    ).all()
    key_of = {actor_id: by_host[domain] for actor_id, domain in actors}
    ids = list(key_of)
    if not ids:
        return
    target = aliased(Actor)
    touching = or_(Follow.follower_id.in_(ids), Follow.target_id.in_(ids))
    rows = await session.execute(
        select(Follow.follower_id, Follow.target_id, Follow.state, target.type)
        .join(target, target.id == Follow.target_id)
        .where(touching)
    )
    for follower_id, target_id, state, target_type in rows.all():
        key = key_of.get(follower_id) or key_of.get(target_id)
        if state != "accepted" or key is None:
            continue
        if target_type == "Group":
            results[key].memberships += 1
        else:
            results[key].follows += 1
    await session.execute(delete(Follow).where(touching).execution_options(
        synchronize_session=False))
    posts = await session.execute(
        select(Post.author_id, func.count())
        .where(Post.author_id.in_(ids), Post.deleted_at.is_(None))
        .group_by(Post.author_id)
    )
    for author_id, n in posts.all():
        results[key_of[author_id]].posts += n
    await session.execute(
        update(Post)
        .where(Post.author_id.in_(ids), Post.deleted_at.is_(None))
        .values(deleted_at=moment, held=SUSPENDED_MARK)
        .execution_options(synchronize_session=False)
    )
