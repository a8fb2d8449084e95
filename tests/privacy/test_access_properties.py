"""Property-based: for generated posts, visibilities, groups and viewers, the gate never
lets a post out of its audience (fedi.privacy.access against the independent oracle)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fedi.privacy.access import PostFacts, Viewer, can_reply, can_view, listed
from fedi.privacy.audience import Member, Recipient, relay_targets
from fedi.privacy.visibility import ReplyPolicy, Visibility, clamp_to_parent
from tests.privacy.oracle import ROLES, Spec, may_see

GROUP = "https://g.example/groups/g"
PEOPLE = ("ann", "ben", "cid", "dee")
VISIBILITIES = [v.value for v in Visibility]


def uri(name: str) -> str:
    return f"https://p.example/users/{name}"


specs = st.deferred(lambda: st.builds(
    Spec,
    visibility=st.sampled_from(VISIBILITIES),
    author=st.sampled_from(PEOPLE),
    audience=st.frozensets(st.sampled_from(PEOPLE), max_size=3),
    parent=st.none() | specs,
))


def facts(spec: Spec, held: bool = False) -> PostFacts:
    return PostFacts(
        author=uri(spec.author), group=GROUP, visibility=Visibility(spec.visibility),
        audience=frozenset(uri(p) for p in spec.audience), held=held,
        parent=facts(spec.parent) if spec.parent else None,
    )


def viewer(name: str | None, role: str) -> Viewer:
    if name is None or role == "anonymous":
        return Viewer(blocked=role == "blocked")
    groups = frozenset({GROUP})
    return Viewer(
        actor=uri(name),
        member_of=groups if role in ("member", "moderator", "banned") else frozenset(),
        moderator_of=groups if role == "moderator" else frozenset(),
        banned_from=groups if role == "banned" else frozenset(),
        blocked=role == "blocked",
    )


@settings(max_examples=600)
@given(spec=specs, name=st.sampled_from((*PEOPLE, None)), role=st.sampled_from(ROLES))
def test_gate_agrees_with_the_oracle(spec: Spec, name: str | None, role: str) -> None:
    if name is None:
        role = "anonymous" if role != "blocked" else role
    expected = may_see(spec, None if role == "anonymous" else name, role)
    assert can_view(facts(spec), viewer(name, role)) == expected


@settings(max_examples=300)
@given(spec=specs, name=st.sampled_from(PEOPLE), role=st.sampled_from(ROLES))
def test_held_posts_are_for_moderators_and_the_author(spec: Spec, name: str, role: str) -> None:
    seen = can_view(facts(spec, held=True), viewer(name, role))
    if seen:
        assert role == "moderator" or name == spec.author
        assert role != "blocked"


@settings(max_examples=300)
@given(spec=specs)
def test_listings_show_only_public_posts(spec: Spec) -> None:
    if listed(facts(spec)):
        assert spec.visibility == "public"


@settings(max_examples=300)
@given(spec=specs, name=st.sampled_from(PEOPLE), role=st.sampled_from(ROLES),
       policy=st.sampled_from(list(ReplyPolicy)))
def test_nobody_replies_to_what_they_cannot_see(
    spec: Spec, name: str, role: str, policy: ReplyPolicy
) -> None:
    post = PostFacts(author=uri(spec.author), group=GROUP, visibility=Visibility(spec.visibility),
                     audience=frozenset(uri(p) for p in spec.audience), reply_policy=policy)
    who = viewer(name, role)
    if can_reply(post, who):
        assert can_view(post, who)
        assert role != "banned" or name == spec.author
        if policy is ReplyPolicy.NOBODY:
            assert name == spec.author or role == "moderator"


@given(requested=st.sampled_from(list(Visibility)), parent=st.sampled_from(list(Visibility)))
def test_a_reply_never_reaches_further_than_its_parent(
    requested: Visibility, parent: Visibility
) -> None:
    reach = {"public": 3, "unlisted": 2, "members": 1}
    clamped = clamp_to_parent(requested, parent)
    assert reach.get(clamped.value, 0) <= reach.get(parent.value, 0)


@settings(max_examples=300)
@given(
    spec=specs,
    roster=st.lists(
        st.tuples(st.sampled_from(PEOPLE), st.sampled_from(("member", "moderator", "outsider")),
                  st.booleans()),
        max_size=6, unique_by=lambda t: t[0],
    ),
    reply=st.booleans(),
)
def test_delivery_targets_are_a_subset_of_the_audience(
    spec: Spec, roster: list[tuple[str, str, bool]], reply: bool
) -> None:
    """What the relay does: filter candidates through the gate, then pick inboxes."""
    post = facts(spec)
    candidates = [
        (Member(Recipient(uri(name), f"{uri(name)}/inbox", None, False), threaded, True, False),
         viewer(name, role))
        for name, role, threaded in roster
    ]
    allowed = [m for m, v in candidates if can_view(post, v)]
    targets = relay_targets(allowed, is_reply=reply)
    reached = {inbox.removesuffix("/inbox") for inbox in
               targets.activity_inboxes + targets.object_inboxes}
    for name, role, _ in roster:
        if uri(name) in reached:
            assert may_see(spec, name, role)
