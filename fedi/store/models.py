"""SQLAlchemy models: one schema for SQLite and PostgreSQL.

Times are UNIX seconds (float) so queue arithmetic is the same on both databases.
Raw ActivityPub documents are kept as text, exactly as received or sent.
"""

from __future__ import annotations

import time

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

URI = String(2048)


def now() -> float:
    return time.time()


class Base(DeclarativeBase):
    pass


class Actor(Base):
    """Every actor we know: local users, groups and the instance actor, and remote ones."""

    __tablename__ = "actors"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uri: Mapped[str] = mapped_column(URI, unique=True)
    type: Mapped[str] = mapped_column(String(32))
    local: Mapped[bool] = mapped_column(Boolean, default=False)
    username: Mapped[str] = mapped_column(String(255))
    domain: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(Text, default=None)
    summary: Mapped[str | None] = mapped_column(Text, default=None)
    inbox: Mapped[str | None] = mapped_column(URI, default=None)
    shared_inbox: Mapped[str | None] = mapped_column(URI, default=None)
    outbox: Mapped[str | None] = mapped_column(URI, default=None)
    followers_url: Mapped[str | None] = mapped_column(URI, default=None)
    url: Mapped[str | None] = mapped_column(URI, default=None)
    key_id: Mapped[str | None] = mapped_column(URI, default=None, index=True)
    public_key_pem: Mapped[str | None] = mapped_column(Text, default=None)
    private_key_pem: Mapped[str | None] = mapped_column(Text, default=None)
    # Ed25519 key for object integrity proofs (FEP-8b32), published as a FEP-521a Multikey;
    # the private half only for local actors.
    assertion_key_id: Mapped[str | None] = mapped_column(URI, default=None)
    assertion_public_key: Mapped[str | None] = mapped_column(Text, default=None)
    assertion_private_pem: Mapped[str | None] = mapped_column(Text, default=None)
    manually_approves_followers: Mapped[bool] = mapped_column(Boolean, default=False)
    # The avatar's URL (a local user's uploaded one is served from /media/avatars/).
    icon: Mapped[str | None] = mapped_column(URI, default=None)
    fetched_at: Mapped[float] = mapped_column(Float, default=now)
    key_refreshed_at: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[float] = mapped_column(Float, default=now)

    __table_args__ = (
        Index("ix_actors_domain_username", "domain", "username"),
        # Users and groups share one local name space (WebFinger cannot tell them apart).
        Index(
            "uq_actors_local_username",
            "username",
            unique=True,
            sqlite_where=text("local"),
            postgresql_where=text("local"),
        ),
    )


class User(Base):
    __tablename__ = "users"
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id"), primary_key=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class Group(Base):
    __tablename__ = "groups"
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id"), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("actors.id"))
    join_policy: Mapped[str] = mapped_column(String(16), default="open")
    rules: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of strings
    privacy: Mapped[str] = mapped_column(String(16), default="public")  # public|private|hidden
    # Who may reply by default: anyone | members | mentioned | nobody.
    reply_policy: Mapped[str] = mapped_column(String(16), default="members")
    premoderation: Mapped[bool] = mapped_column(Boolean, default=False)
    # Member reports after which a post is hidden until a moderator looks (0 = off).
    report_threshold: Mapped[int] = mapped_column(Integer, default=0)
    questions: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of strings
    # Members may dislike (downvote) posts, as Lemmy communities allow; off by default.
    allow_dislikes: Mapped[bool] = mapped_column(Boolean, default=False)
    # What the compose form offers first (None: the widest the group's privacy allows).
    default_visibility: Mapped[str | None] = mapped_column(String(32), default=None)
    banner: Mapped[str | None] = mapped_column(URI, default=None)  # the actor's `image`
    created_at: Mapped[float] = mapped_column(Float, default=now)


class GroupRole(Base):
    """Owner and moderators of a group (members are accepted follows)."""

    __tablename__ = "group_roles"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("actors.id"), index=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id"))
    role: Mapped[str] = mapped_column(String(16))  # owner | moderator
    created_at: Mapped[float] = mapped_column(Float, default=now)
    __table_args__ = (UniqueConstraint("group_id", "actor_id"),)


class GroupBan(Base):
    __tablename__ = "group_bans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("actors.id"), index=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id"))
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    banned_by: Mapped[int | None] = mapped_column(ForeignKey("actors.id"), default=None)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    # A ban with an end is lifted by the worker once it passes (None: until unbanned).
    expires_at: Mapped[float | None] = mapped_column(Float, default=None, index=True)
    __table_args__ = (UniqueConstraint("group_id", "actor_id"),)


class Invite(Base):
    __tablename__ = "invites"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("actors.id"), index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("actors.id"), default=None)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    expires_at: Mapped[float | None] = mapped_column(Float, default=None)
    max_uses: Mapped[int | None] = mapped_column(Integer, default=None)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[float | None] = mapped_column(Float, default=None)
    # An invite redeemed on the web for a remote account that has not followed yet.
    redeemed_for: Mapped[str | None] = mapped_column(Text, default=None)  # JSON list of actor ids


class Follow(Base):
    """follower follows target; for a group target this is membership."""

    __tablename__ = "follows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    follower_id: Mapped[int] = mapped_column(ForeignKey("actors.id"), index=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("actors.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))  # pending | accepted | rejected
    activity_uri: Mapped[str | None] = mapped_column(URI, default=None)
    # Answers to the group's join questions, for moderators deciding a pending request.
    answers: Mapped[str | None] = mapped_column(Text, default=None)
    # A microblog member who asked for every reply, not only new threads.
    wants_all_replies: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)
    __table_args__ = (UniqueConstraint("follower_id", "target_id"),)


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uri: Mapped[str] = mapped_column(URI, unique=True)
    type: Mapped[str] = mapped_column(String(32), default="Note")
    author_id: Mapped[int] = mapped_column(ForeignKey("actors.id"), index=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id"), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(URI, default=None, index=True)
    # The thread's first post (its own id for a thread starter).
    thread_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)
    context: Mapped[str | None] = mapped_column(URI, default=None, index=True)
    name: Mapped[str | None] = mapped_column(Text, default=None)
    summary: Mapped[str | None] = mapped_column(Text, default=None)
    content: Mapped[str] = mapped_column(Text, default="")
    visibility: Mapped[str] = mapped_column(String(32), default="public")
    local: Mapped[bool] = mapped_column(Boolean, default=False)
    published: Mapped[float] = mapped_column(Float, default=now)
    updated: Mapped[float | None] = mapped_column(Float, default=None)
    deleted_at: Mapped[float | None] = mapped_column(Float, default=None)
    pinned_at: Mapped[float | None] = mapped_column(Float, default=None)
    locked_at: Mapped[float | None] = mapped_column(Float, default=None)
    # Who may reply: anyone | members | mentioned | nobody (privacy.access decides).
    reply_policy: Mapped[str] = mapped_column(String(16), default="members")
    circle_id: Mapped[int | None] = mapped_column(Integer, default=None)
    # Held back from relay: "premoderation", "reply-approval", "reports"; None when visible.
    held: Mapped[str | None] = mapped_column(String(32), default=None)
    # The group's Announce of the bare object (the boost microblogs see), to undo on delete.
    boost_uri: Mapped[str | None] = mapped_column(URI, default=None)
    # The group's own followers-only copy of a non-public post, for microblogs (see README).
    copy_uri: Mapped[str | None] = mapped_column(URI, default=None, index=True)
    like_count: Mapped[int] = mapped_column(Integer, default=0)
    reply_count: Mapped[int] = mapped_column(Integer, default=0)
    document: Mapped[str] = mapped_column(Text)  # the AS object as served / received
    # The Create it came in (or went out) with: what the group relays, unchanged.
    activity: Mapped[str | None] = mapped_column(Text, default=None)
    # A group's pages list its threads newest first (its pinned ones before); a thread page
    # reads one thread in order.
    __table_args__ = (
        Index("ix_posts_group_published", "group_id", "published"),
        Index("ix_posts_group_pinned", "group_id", "pinned_at"),
        # Threads only (a thread's first post): a deep page of a big group, newest first.
        Index("ix_posts_group_threads", "group_id", "published",
              postgresql_where=text("thread_id = id"), sqlite_where=text("thread_id = id")),
        Index("ix_posts_thread_published", "thread_id", "published"),
    )


class Reaction(Base):
    """A Like or EmojiReact of a post."""

    __tablename__ = "reactions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"), index=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id"))
    type: Mapped[str] = mapped_column(String(16))  # Like | EmojiReact
    content: Mapped[str | None] = mapped_column(String(255), default=None)
    activity_uri: Mapped[str] = mapped_column(URI, unique=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class InboxItem(Base):
    """An incoming activity, verified and stored durably before we answer 202."""

    __tablename__ = "inbox_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    activity_uri: Mapped[str] = mapped_column(URI, unique=True)
    actor_uri: Mapped[str] = mapped_column(URI)
    recipient: Mapped[str | None] = mapped_column(URI, default=None)
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="new")  # new | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    received_at: Mapped[float] = mapped_column(Float, default=now)
    processed_at: Mapped[float | None] = mapped_column(Float, default=None)
    __table_args__ = (Index("ix_inbox_items_state_id", "state", "id"),)


class OutboundActivity(Base):
    """An activity we send; its body is stored once and shared by its deliveries."""

    __tablename__ = "outbound_activities"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uri: Mapped[str] = mapped_column(URI, unique=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class Delivery(Base):
    """One (activity, inbox) pair of the transactional outbox."""

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # No index of its own: the unique (activity_id, inbox_url) serves lookups by activity.
    # An outbound_activities id, with no foreign key on PostgreSQL (migration 0012: a trigger
    # per row): enqueue writes the row just after its activity, and activities stay.
    activity_id: Mapped[int] = mapped_column(Integer)
    inbox_url: Mapped[str] = mapped_column(URI)
    host: Mapped[str] = mapped_column(String(255), index=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|done|failed|dropped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=now)
    claimed_until: Mapped[float] = mapped_column(Float, default=0.0)
    last_status: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    done_at: Mapped[float | None] = mapped_column(Float, default=None)
    # (object, inbox) as the object's digest, then the inbox's: a row waits while an earlier row
    # with the same key is pending, so a Create reaches an inbox before its Update and Delete
    # (fedi.delivery.enqueue).
    order_key: Mapped[str | None] = mapped_column(String(32), default=None)
    __table_args__ = (
        Index("ix_deliveries_due", "state", "next_attempt_at"),
        Index("ix_deliveries_order_key", "order_key", "state", "id"),
        UniqueConstraint("activity_id", "inbox_url"),
    )


class Host(Base):
    """Per-host delivery health: the circuit breaker that keeps a dead host from holding others."""

    __tablename__ = "hosts"
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    down_until: Mapped[float] = mapped_column(Float, default=0.0)
    gone: Mapped[bool] = mapped_column(Boolean, default=False)
    last_success_at: Mapped[float | None] = mapped_column(Float, default=None)
    last_failure_at: Mapped[float | None] = mapped_column(Float, default=None)
    # NodeInfo software name, and whether that software shows threads (see groups.kinds).
    software: Mapped[str | None] = mapped_column(String(64), default=None)
    software_checked_at: Mapped[float] = mapped_column(Float, default=0.0)


class DomainBlock(Base):
    """Instance domain policy (Mastodon's domain blocks); covers subdomains."""

    __tablename__ = "domain_blocks"
    domain: Mapped[str] = mapped_column(String(255), primary_key=True)  # normalised
    severity: Mapped[str] = mapped_column(String(16))  # suspend | silence | noop
    reject_media: Mapped[bool] = mapped_column(Boolean, default=False)
    reject_reports: Mapped[bool] = mapped_column(Boolean, default=False)
    public_comment: Mapped[str | None] = mapped_column(Text, default=None)
    private_comment: Mapped[str | None] = mapped_column(Text, default=None)
    obfuscate: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[float | None] = mapped_column(Float, default=None)
    import_id: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class DomainAllow(Base):
    """Domains federated with in allowlist mode."""

    __tablename__ = "domain_allows"
    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class InstanceSetting(Base):
    """Admin settings changed at run time (e.g. federation_mode = blocklist | allowlist)."""

    __tablename__ = "instance_settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class BlocklistImport(Base):
    """One applied blocklist import, with what it replaced, so it can be undone in one step."""

    __tablename__ = "blocklist_imports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str | None] = mapped_column(Text, default=None)
    previous: Mapped[str] = mapped_column(Text)  # JSON: domain → previous block row or null
    applied_at: Mapped[float] = mapped_column(Float, default=now)
    undone_at: Mapped[float | None] = mapped_column(Float, default=None)


class GroupDomainBlock(Base):
    """A whole domain blocked from one group."""

    __tablename__ = "group_domain_blocks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("actors.id"), index=True)
    domain: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[float] = mapped_column(Float, default=now)
    __table_args__ = (UniqueConstraint("group_id", "domain"),)


class Report(Base):
    """A report (Flag) about an actor and some of their posts."""

    __tablename__ = "reports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    activity_uri: Mapped[str | None] = mapped_column(URI, default=None, unique=True)
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id"), default=None)
    target_id: Mapped[int] = mapped_column(ForeignKey("actors.id"), index=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id"), default=None)
    post_uris: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    comment: Mapped[str | None] = mapped_column(Text, default=None)
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | resolved
    resolution: Mapped[str | None] = mapped_column(String(32), default=None)
    resolution_note: Mapped[str | None] = mapped_column(Text, default=None)
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("actors.id"), default=None)
    forwarded_at: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    resolved_at: Mapped[float | None] = mapped_column(Float, default=None)


class AuditEntry(Base):
    """Append-only record of every moderation and admin action."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float, default=now)
    who: Mapped[str] = mapped_column(Text)  # an actor id, or "admin (cli)"
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(Text)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id"), default=None, index=True)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    details: Mapped[str] = mapped_column(Text, default="{}")  # JSON


class PostAudience(Base):
    """The people a `mentioned` or `circle` post is for (fixed when it is posted)."""

    __tablename__ = "post_audience"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"), index=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id"))
    __table_args__ = (UniqueConstraint("post_id", "actor_id"),)


class Circle(Base):
    """A named list of people, kept by a user or by a group's moderators."""

    __tablename__ = "circles"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("actors.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float, default=now)
    __table_args__ = (UniqueConstraint("owner_id", "name"),)


class CircleMember(Base):
    __tablename__ = "circle_members"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    circle_id: Mapped[int] = mapped_column(ForeignKey("circles.id"), index=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id"))
    __table_args__ = (UniqueConstraint("circle_id", "actor_id"),)


class WorkerHeartbeat(Base):
    """A worker process (in `fedi serve` or `fedi worker`) says it is alive; /readyz asks."""

    __tablename__ = "worker_heartbeats"
    worker: Mapped[str] = mapped_column(String(255), primary_key=True)  # hostname:pid
    started_at: Mapped[float] = mapped_column(Float)
    seen_at: Mapped[float] = mapped_column(Float, index=True)


class Account(Base):
    """What lets a local user sign in from a browser: password, e-mail, 2FA, approval state.

    One row per local Person that has a password; CLI-made users get one with
    `fedi set-password`. The password is an argon2id encoded hash (parameters included).
    """

    __tablename__ = "accounts"
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id"), primary_key=True)
    password_hash: Mapped[str | None] = mapped_column(Text, default=None)
    email: Mapped[str | None] = mapped_column(String(320), default=None, index=True)
    email_verified_at: Mapped[float | None] = mapped_column(Float, default=None)
    # Approval-mode sign-ups wait here (approved False) with the applicant's reason.
    approved: Mapped[bool] = mapped_column(Boolean, default=True)
    approval_reason: Mapped[str | None] = mapped_column(Text, default=None)
    totp_secret: Mapped[str | None] = mapped_column(String(64), default=None)
    password_changed_at: Mapped[float] = mapped_column(Float, default=now)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class WebSession(Base):
    """A browser session; only the SHA-256 of its random token is stored."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id"), index=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    last_seen_at: Mapped[float] = mapped_column(Float, default=now)
    expires_at: Mapped[float] = mapped_column(Float)
    user_agent: Mapped[str | None] = mapped_column(String(255), default=None)


class LoginAttempt(Base):
    """Failed sign-ins, counted per account and per address to throttle guessing; a table
    so that every `fedi serve` process shares the counts."""

    __tablename__ = "login_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(255))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[float] = mapped_column(Float, default=now)
    __table_args__ = (
        Index("ix_login_attempts_username_at", "username", "at"),
        Index("ix_login_attempts_address_at", "address", "at"),
    )


class AccountToken(Base):
    """Single-use e-mailed or admin-made tokens (password reset, e-mail verification),
    stored as SHA-256 hashes."""

    __tablename__ = "account_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))  # reset | verify
    created_at: Mapped[float] = mapped_column(Float, default=now)
    expires_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float, default=None)


class SignupInvite(Base):
    """An instance invite code for invite-only registration (`fedi admin invite-user`)."""

    __tablename__ = "signup_invites"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    expires_at: Mapped[float | None] = mapped_column(Float, default=None)
    max_uses: Mapped[int | None] = mapped_column(Integer, default=None)
    uses: Mapped[int] = mapped_column(Integer, default=0)


class Notification(Base):
    """Something a local person should know: a reply, a mention, a join answered, a post held
    or removed. Rows name ids only; pages render them through the privacy gate."""

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("actors.id"))
    # reply | mention | favourite | reblog | follow | follow_request | join_approved |
    # join_refused | post_held | post_removed | post_approved (fedi.groups.notices)
    kind: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id"), default=None)
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id"), default=None)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id"), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    read_at: Mapped[float | None] = mapped_column(Float, default=None)
    __table_args__ = (
        Index("ix_notifications_recipient_read", "recipient_id", "read_at"),
        Index("ix_notifications_recipient_created", "recipient_id", "created_at"),
    )


class OAuthApp(Base):
    """A client app registered through POST /api/v1/apps; the secret is kept as SHA-256."""

    __tablename__ = "oauth_apps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    client_secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(Text)
    website: Mapped[str | None] = mapped_column(URI, default=None)
    redirect_uris: Mapped[str] = mapped_column(Text)  # newline-separated
    scopes: Mapped[str] = mapped_column(String(1024))  # space-separated
    created_at: Mapped[float] = mapped_column(Float, default=now)


class OAuthCode(Base):
    """A one-time authorization code from the consent page (RFC 6749 §4.1, PKCE RFC 7636)."""

    __tablename__ = "oauth_codes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("oauth_apps.id"), index=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id"))
    scopes: Mapped[str] = mapped_column(String(1024))
    redirect_uri: Mapped[str] = mapped_column(URI)
    code_challenge: Mapped[str | None] = mapped_column(String(128), default=None)
    challenge_method: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    expires_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float, default=None)


class OAuthToken(Base):
    """A bearer token (and its refresh token) for the client API, stored only as SHA-256.
    actor_id is None for an app-only token (client_credentials)."""

    __tablename__ = "oauth_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    app_id: Mapped[int] = mapped_column(ForeignKey("oauth_apps.id"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id"), index=True,
                                                 default=None)
    scopes: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[float] = mapped_column(Float, default=now)
    expires_at: Mapped[float | None] = mapped_column(Float, default=None)
    revoked_at: Mapped[float | None] = mapped_column(Float, default=None)
    last_used_at: Mapped[float | None] = mapped_column(Float, default=None)


class ApiIdempotency(Base):
    """An Idempotency-Key a token already used to create a status, and what it created."""

    __tablename__ = "api_idempotency"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("oauth_tokens.id"))
    key: Mapped[str] = mapped_column(String(255))
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id"), default=None)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    __table_args__ = (UniqueConstraint("token_id", "key", name="uq_api_idempotency_token_key"),)


class Bookmark(Base):
    __tablename__ = "bookmarks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id"))
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"))
    created_at: Mapped[float] = mapped_column(Float, default=now)
    __table_args__ = (UniqueConstraint("actor_id", "post_id", name="uq_bookmarks_actor_post"),)


class PersonRelation(Base):
    """A local person's block or mute of another account: their own timelines and
    notifications leave that account out (group moderation is separate)."""

    __tablename__ = "person_relations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id"), index=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("actors.id"))
    kind: Mapped[str] = mapped_column(String(16))  # block | mute
    mute_notifications: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    __table_args__ = (
        UniqueConstraint("actor_id", "target_id", "kind", name="uq_person_relations"),
        # Who asked to hear of this author's posts: asked for every post stored.
        Index("ix_person_relations_target", "target_id", "kind"),
    )


class Marker(Base):
    """Where a person stopped reading a timeline (Mastodon's markers)."""

    __tablename__ = "markers"
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id"), primary_key=True)
    timeline: Mapped[str] = mapped_column(String(16), primary_key=True)  # home | notifications
    last_read_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class PostEdit(Base):
    """A post's text before an edit, for its edit history."""

    __tablename__ = "post_edits"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"), index=True)
    name: Mapped[str | None] = mapped_column(Text, default=None)
    summary: Mapped[str | None] = mapped_column(Text, default=None)
    content: Mapped[str] = mapped_column(Text, default="")
    edited_at: Mapped[float] = mapped_column(Float, default=now)
