"""Settings: read once by the CLI or app factory, never at import, from one source: the
environment, over a config file named by `--config FILE` or FEDI_CONFIG (a `.toml` file, or
an env file of FEDI_NAME=value lines as systemd's EnvironmentFile= and `set -a; . FILE` read
it). A variable set in the environment wins over the file's value."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from fedi.errors import ConfigError

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///fedi.db"
CONFIG_ENV = "FEDI_CONFIG"

_T = TypeVar("_T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """Everything an admin can configure. See README "Configuration" for each variable."""

    base_url: str = DEFAULT_BASE_URL
    database_url: str = DEFAULT_DATABASE_URL
    allow_private_addresses: bool = False
    instance_name: str = "fedi"
    delivery_concurrency: int = 256
    delivery_per_host: int = 64  # the ceiling of the adaptive per-host limit (starts at 8)
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
    # The inbox processor handles this many activities in one transaction (a savepoint
    # each only once one of them has failed after a write).
    inbox_batch: int = 100
    # HTTP connections: request head and body must arrive within these, idle ones close.
    http_header_timeout: int = 10
    http_body_timeout: int = 30
    http_keepalive_timeout: int = 5
    # Live updates: open event streams each server process keeps at most.
    live_max_streams: int = 1000
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
    # Where people get this server's source (AGPL §13); unset: the About page offers the
    # running code itself as /source.tar.gz.
    source_url: str | None = None
    # The config file these came from (absolute), handed on to `--workers N` processes.
    config_file: str | None = None

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
        f"FEDI_DATABASE_URL={without_password(raw)!r} is not supported; use "
        "sqlite+aiosqlite:///path/to/fedi.db or postgresql+asyncpg://user@host:5432/dbname"
    )


def without_password(url: str) -> str:
    """The URL as it may be printed: user:password@ becomes user:***@."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not (sep and at and ":" in userinfo):
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


# The variable of each setting: FEDI_ and the field's name in capitals.
VARIABLES: tuple[str, ...] = tuple(
    f"FEDI_{f.name.upper()}" for f in fields(Settings) if f.name != "config_file"
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _smtp_url(env: Mapping[str, str]) -> str | None:
    raw = env.get("FEDI_SMTP_URL", "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("smtp", "smtps", "smtp+starttls") or not parts.hostname:
        raise ConfigError(
            f"FEDI_SMTP_URL={without_password(raw)!r} must look like "
            "smtp://user:password@host:port, smtp+starttls://… or smtps://…"
        )
    return raw


def _http_url(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}={raw!r} must be an http(s) URL")
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


def load_settings(
    env: Mapping[str, str] | None = None, config_file: str | os.PathLike[str] | None = None
) -> Settings:
    """Settings from the config file (`config_file`, else FEDI_CONFIG) with the environment's
    FEDI_* variables over it; ConfigError saying what to fix (and where, for the file)."""
    env = os.environ if env is None else env
    named = config_file if config_file is not None else env.get(CONFIG_ENV, "").strip()
    values: dict[str, str] = {}
    where: dict[str, str] = {}  # variable -> its place in the file, for error messages
    path: Path | None = None
    if named:
        path = Path(named).expanduser().absolute()
        for name, (value, place) in read_config_file(path).items():
            values[name], where[name] = value, place
    for name in VARIABLES:
        if name in env:
            values[name] = env[name]
            where.pop(name, None)
    return _settings(values, where, str(path) if path else None)


def _settings(env: Mapping[str, str], where: Mapping[str, str], source: str | None) -> Settings:
    def get(name: str, parse: Callable[[], _T]) -> _T:
        try:
            return parse()
        except ConfigError as exc:
            if name in where:
                raise ConfigError(f"{where[name]}: {exc.reason}") from None
            raise

    return Settings(
        base_url=get("FEDI_BASE_URL", lambda: normalise_base_url(
            env.get("FEDI_BASE_URL", DEFAULT_BASE_URL))),
        database_url=get("FEDI_DATABASE_URL", lambda: normalise_database_url(
            env.get("FEDI_DATABASE_URL", DEFAULT_DATABASE_URL))),
        allow_private_addresses=get("FEDI_ALLOW_PRIVATE_ADDRESSES", lambda: _bool(
            env, "FEDI_ALLOW_PRIVATE_ADDRESSES", False)),
        instance_name=env.get("FEDI_INSTANCE_NAME", "fedi").strip() or "fedi",
        delivery_concurrency=get("FEDI_DELIVERY_CONCURRENCY", lambda: _int(
            env, "FEDI_DELIVERY_CONCURRENCY", 256)),
        delivery_per_host=get("FEDI_DELIVERY_PER_HOST", lambda: _int(
            env, "FEDI_DELIVERY_PER_HOST", 64)),
        max_inbox_bytes=get("FEDI_MAX_INBOX_BYTES", lambda: _int(
            env, "FEDI_MAX_INBOX_BYTES", 1_048_576, minimum=1024)),
        database_pool_size=get("FEDI_DATABASE_POOL_SIZE", lambda: _int(
            env, "FEDI_DATABASE_POOL_SIZE", 32)),
        authorized_fetch=get("FEDI_AUTHORIZED_FETCH", lambda: _bool(
            env, "FEDI_AUTHORIZED_FETCH", False)),
        delivery_lease_seconds=get("FEDI_DELIVERY_LEASE_SECONDS", lambda: _int(
            env, "FEDI_DELIVERY_LEASE_SECONDS", 300)),
        inbox_max_queue=get("FEDI_INBOX_MAX_QUEUE", lambda: _int(
            env, "FEDI_INBOX_MAX_QUEUE", 10_000)),
        inbox_max_age_seconds=get("FEDI_INBOX_MAX_AGE_SECONDS", lambda: _int(
            env, "FEDI_INBOX_MAX_AGE_SECONDS", 600)),
        inbox_host_rate=get("FEDI_INBOX_HOST_RATE", lambda: _int(
            env, "FEDI_INBOX_HOST_RATE", 30)),
        inbox_host_burst=get("FEDI_INBOX_HOST_BURST", lambda: _int(
            env, "FEDI_INBOX_HOST_BURST", 300)),
        inbox_batch=get("FEDI_INBOX_BATCH", lambda: _int(
            env, "FEDI_INBOX_BATCH", 100)),
        http_header_timeout=get("FEDI_HTTP_HEADER_TIMEOUT", lambda: _int(
            env, "FEDI_HTTP_HEADER_TIMEOUT", 10)),
        http_body_timeout=get("FEDI_HTTP_BODY_TIMEOUT", lambda: _int(
            env, "FEDI_HTTP_BODY_TIMEOUT", 30)),
        http_keepalive_timeout=get("FEDI_HTTP_KEEPALIVE_TIMEOUT", lambda: _int(
            env, "FEDI_HTTP_KEEPALIVE_TIMEOUT", 5)),
        live_max_streams=get("FEDI_LIVE_MAX_STREAMS", lambda: _int(
            env, "FEDI_LIVE_MAX_STREAMS", 1000)),
        log_format=get("FEDI_LOG_FORMAT", lambda: _choice(
            env, "FEDI_LOG_FORMAT", ("text", "json"))),
        access_log=get("FEDI_ACCESS_LOG", lambda: _bool(env, "FEDI_ACCESS_LOG", True)),
        metrics_token=env.get("FEDI_METRICS_TOKEN", "").strip() or None,
        media_dir=env.get("FEDI_MEDIA_DIR", "").strip() or "media",
        smtp_url=get("FEDI_SMTP_URL", lambda: _smtp_url(env)),
        smtp_from=env.get("FEDI_SMTP_FROM", "").strip() or None,
        trusted_proxies=get("FEDI_TRUSTED_PROXIES", lambda: _proxies(env)),
        password_time_cost=get("FEDI_PASSWORD_TIME_COST", lambda: _int(
            env, "FEDI_PASSWORD_TIME_COST", 3)),
        password_memory_kib=get("FEDI_PASSWORD_MEMORY_KIB", lambda: _int(
            env, "FEDI_PASSWORD_MEMORY_KIB", 65_536, minimum=8)),
        session_days=get("FEDI_SESSION_DAYS", lambda: _int(env, "FEDI_SESSION_DAYS", 30)),
        source_url=get("FEDI_SOURCE_URL", lambda: _http_url(env, "FEDI_SOURCE_URL")),
        config_file=source,
    )


def read_config_file(path: Path) -> dict[str, tuple[str, str]]:
    """{FEDI_NAME: (value, where)} from a `.toml` file or an env file (any other name)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"the config file {path} does not exist; fix --config or "
                          f"{CONFIG_ENV}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path} ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    return _read_toml(path, text) if path.suffix == ".toml" else _read_env_file(path, text)


def _read_toml(path: Path, text: str) -> dict[str, tuple[str, str]]:
    """Flat: each key is a setting's name without FEDI_, in lower case (base_url = "…")."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    found: dict[str, tuple[str, str]] = {}
    for key, value in data.items():
        where = f"{path}: {key}"
        name = f"FEDI_{key.upper()}"
        if isinstance(value, dict):
            raise ConfigError(f"{path}: [{key}]: sections are not used; put every setting at "
                              "the top of the file")
        if key != key.lower() or name not in VARIABLES:
            raise ConfigError(f"{where}: unknown setting; the settings are "
                              f"{', '.join(v[5:].lower() for v in VARIABLES)}")
        if isinstance(value, bool):
            found[name] = ("1" if value else "0", where)
        elif isinstance(value, int | str):
            found[name] = (str(value), where)
        else:
            raise ConfigError(f"{where}: must be a string, a whole number or true/false")
    return found


def _read_env_file(path: Path, text: str) -> dict[str, tuple[str, str]]:
    """KEY=VALUE lines, read as both systemd's EnvironmentFile= and a shell's `set -a; .`
    read them; what the two would read differently is refused, saying how to write it."""
    found: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{path} line {number}"
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export "):].lstrip()
        key, equals, value = stripped.partition("=")
        if not equals or not _NAME.match(key):
            raise ConfigError(f"{where}: not NAME=value (no spaces around '=')")
        if key not in VARIABLES:
            raise ConfigError(f"{where}: unknown setting {key}; see `fedi --help` for the "
                              "FEDI_* settings")
        found[key] = (_env_value(value, where), where)
    return found


def _env_value(raw: str, where: str) -> str:
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = raw.find(quote, 1)
        while quote == '"' and end > 0 and raw[end - 1] == "\\":
            end = raw.find(quote, end + 1)
        if end < 0 or raw[end + 1:].strip():
            raise ConfigError(f"{where}: the value's closing {quote} must end the line")
        value = raw[1:end]
        if quote == "'":
            return value
        if re.search(r"(?<!\\)[$`]", value):
            raise ConfigError(f"{where}: a shell would expand $ or ` in double quotes; use "
                              "single quotes")
        return re.sub(r"\\([\\\"$`])", r"\1", value)
    if re.search(r"[\s$`\\'\"#;&|<>()]", raw):
        raise ConfigError(f"{where}: put a value with spaces or any of $`\\'\"#;&|<>() in "
                          "single quotes")
    return raw
