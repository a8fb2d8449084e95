"""Settings: read once from the environment by the CLI or app factory, never at import."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fedi.errors import ConfigError

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///fedi.db"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """Everything an admin can configure. See README "Configuration" for each variable."""

    base_url: str = DEFAULT_BASE_URL
    database_url: str = DEFAULT_DATABASE_URL
    allow_private_addresses: bool = False
    instance_name: str = "fedi"
    delivery_concurrency: int = 128
    delivery_per_host: int = 8
    max_inbox_bytes: int = 1_048_576
    # Connections each process keeps to PostgreSQL; near the requests it serves at once.
    database_pool_size: int = 32
    # Require an HTTP signature on every ActivityPub fetch ("authorized fetch").
    authorized_fetch: bool = False
    # How long a worker owns the rows it claimed; a killed worker's rows go out after this.
    delivery_lease_seconds: int = 300
    # Inbox admission: past this many waiting activities, or an oldest one waiting this long,
    # the inbox answers 503 with Retry-After instead of queueing more.
    inbox_max_queue: int = 10_000
    inbox_max_age_seconds: int = 600
    # Each remote host may send this many activities per second, in bursts up to the burst.
    inbox_host_rate: int = 30
    inbox_host_burst: int = 300
    # HTTP connections: request head and body must arrive within these, idle ones close.
    http_header_timeout: int = 10
    http_body_timeout: int = 30
    http_keepalive_timeout: int = 5
    # Logs: "text" lines or "json" (one object per line); one access-log line per request.
    log_format: str = "text"
    access_log: bool = True
    # A bearer token that lets a scraper read /metrics from anywhere (else loopback only).
    metrics_token: str | None = field(default=None, repr=False)
    # Accounts: uploaded avatars live here; e-mail goes out through this SMTP server (with
    # its password: never printed); X-Forwarded-For is believed only from these proxies.
    media_dir: str = "media"
    smtp_url: str | None = field(default=None, repr=False)
    smtp_from: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    # argon2id cost: raise them and each password is rehashed at its next login.
    password_time_cost: int = 3
    password_memory_kib: int = 65_536
    session_days: int = 30

    @property
    def scheme(self) -> str:
        return urlsplit(self.base_url).scheme

    @property
    def domain(self) -> str:
        """host[:port] as used in WebFinger handles and HTTP Host headers."""
        return urlsplit(self.base_url).netloc

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use 1 or 0")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of `choices`; the first is the default."""
    value = env.get(name, "").strip().lower() or choices[0]
    if value not in choices:
        raise ConfigError(f"{name}={env[name]!r} must be one of: {', '.join(choices)}")
    return value


def normalise_base_url(raw: str) -> str:
    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"FEDI_BASE_URL={raw!r} must be an absolute http(s) URL such as "
            f"{DEFAULT_BASE_URL} or https://groups.example"
        )
    if parts.path or parts.query or parts.fragment or parts.username:
        raise ConfigError(
            f"FEDI_BASE_URL={raw!r} must be scheme://host[:port] only, with no path, "
            "query or user name; fedi serves from the root of its host"
        )
    return f"{parts.scheme}://{parts.netloc.lower()}"


def normalise_database_url(raw: str) -> str:
    url = raw.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    if url.startswith(("sqlite+aiosqlite:///", "postgresql+asyncpg://")):
        return url
    raise ConfigError(
        f"FEDI_DATABASE_URL={_without_password(raw)!r} is not supported; use "
        "sqlite+aiosqlite:///path/to/fedi.db or postgresql+asyncpg://user@host:5432/dbname"
    )


def _without_password(url: str) -> str:
    """The URL as it may be printed: user:password@ becomes user:***@."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not (sep and at and ":" in userinfo):
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def _smtp_url(env: Mapping[str, str]) -> str | None:
    raw = env.get("FEDI_SMTP_URL", "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("smtp", "smtps", "smtp+starttls") or not parts.hostname:
        raise ConfigError(
            f"FEDI_SMTP_URL={_without_password(raw)!r} must look like "
            "smtp://user:password@host:port, smtp+starttls://… or smtps://…"
        )
    return raw


def _proxies(env: Mapping[str, str]) -> tuple[str, ...]:
    """Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For is believed."""
    import ipaddress

    found = []
    for item in env.get("FEDI_TRUSTED_PROXIES", "").replace(",", " ").split():
        try:
            found.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(
                f"FEDI_TRUSTED_PROXIES: {item!r} is not an IP address or network"
            ) from None
    return tuple(found)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from environment variables; raise ConfigError saying what to fix."""
    env = os.environ if env is None else env
    return Settings(
        base_url=normalise_base_url(env.get("FEDI_BASE_URL", DEFAULT_BASE_URL)),
        database_url=normalise_database_url(env.get("FEDI_DATABASE_URL", DEFAULT_DATABASE_URL)),
        allow_private_addresses=_bool(env, "FEDI_ALLOW_PRIVATE_ADDRESSES", False),
        instance_name=env.get("FEDI_INSTANCE_NAME", "fedi").strip() or "fedi",
        delivery_concurrency=_int(env, "FEDI_DELIVERY_CONCURRENCY", 128),
        delivery_per_host=_int(env, "FEDI_DELIVERY_PER_HOST", 8),
        max_inbox_bytes=_int(env, "FEDI_MAX_INBOX_BYTES", 1_048_576, minimum=1024),
        database_pool_size=_int(env, "FEDI_DATABASE_POOL_SIZE", 32),
        authorized_fetch=_bool(env, "FEDI_AUTHORIZED_FETCH", False),
        delivery_lease_seconds=_int(env, "FEDI_DELIVERY_LEASE_SECONDS", 300),
        inbox_max_queue=_int(env, "FEDI_INBOX_MAX_QUEUE", 10_000),
        inbox_max_age_seconds=_int(env, "FEDI_INBOX_MAX_AGE_SECONDS", 600),
        inbox_host_rate=_int(env, "FEDI_INBOX_HOST_RATE", 30),
        inbox_host_burst=_int(env, "FEDI_INBOX_HOST_BURST", 300),
        http_header_timeout=_int(env, "FEDI_HTTP_HEADER_TIMEOUT", 10),
        http_body_timeout=_int(env, "FEDI_HTTP_BODY_TIMEOUT", 30),
        http_keepalive_timeout=_int(env, "FEDI_HTTP_KEEPALIVE_TIMEOUT", 5),
        log_format=_choice(env, "FEDI_LOG_FORMAT", ("text", "json")),
        access_log=_bool(env, "FEDI_ACCESS_LOG", True),
        metrics_token=env.get("FEDI_METRICS_TOKEN", "").strip() or None,
        media_dir=env.get("FEDI_MEDIA_DIR", "").strip() or "media",
        smtp_url=_smtp_url(env),
        smtp_from=env.get("FEDI_SMTP_FROM", "").strip() or None,
        trusted_proxies=_proxies(env),
        password_time_cost=_int(env, "FEDI_PASSWORD_TIME_COST", 3),
        password_memory_kib=_int(env, "FEDI_PASSWORD_MEMORY_KIB", 65_536, minimum=8),
        session_days=_int(env, "FEDI_SESSION_DAYS", 30),
    )
