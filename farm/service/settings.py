"""Settings of the captcha service: defaults, then the environment, then `farm serve`'s flags.

FARM_STORE     the store whose pools the service draws from (as everywhere)
FARM_REDIS     the service's shared state (issued and verified captchas, study sessions); defaults to
               FARM_BROKER when that is a Redis, so a farm with a Redis broker needs nothing more
FARM_CAPTCHA_TTL   seconds an issued captcha may wait for its verify (default 300)
FARM_API_KEYS  `platform=key,platform=key`: each platform's key (X-API-Key header); unset, the API is open
               (a warning at start-up); set but holding no key, the service refuses to start
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from redis.connection import parse_url

from farm.exceptions import SettingError

__all__ = ["ServiceSettings", "parse_api_keys", "redis_url", "redact", "DEFAULT_TTL", "MIN_KEY_CHARS", "BOUNDS"]

DEFAULT_TTL = 300  # a person reads and types a captcha in seconds; five minutes covers a slow form
DEFAULT_ANSWER_WINDOW = 86_400  # a platform's risk system may take a day to flag a user
# setting: (highest value, where it is set, why no higher). Every one must also be above 0.
BOUNDS = {
    "ttl": (3600, "--ttl / FARM_CAPTCHA_TTL",
            "a captcha held longer is passed over by every other draw meanwhile, and the pool runs dry"),
    "answer_window": (30 * 86_400, "--answer-window",
                      "a month covers a slow review; every verified id is remembered in Redis that long"),
    "served_flush": (600, "ServiceSettings.served_flush",
                     "the refill counts a served captcha only once its mark is flushed"),
    "max_age": (3600, "ServiceSettings.max_age", "new shards and other processes' marks wait that long"),
}
_WHOLE = ("ttl", "answer_window")  # seconds the API reports as integers
MIN_KEY_CHARS = 16  # shorter keys can be guessed over the network; `openssl rand -hex 16` makes one
_PLATFORM = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")  # a metric label value: short, plain


@dataclass(frozen=True)
class ServiceSettings:
    """What `farm serve` runs with. `api_keys` maps platform name -> key; empty means no key is asked."""

    store: str | None = None
    redis: str = ""
    ttl: int = DEFAULT_TTL
    api_keys: dict[str, str] = field(default_factory=dict, repr=False)  # repr=False: keys never reach a log
    answer_window: int = DEFAULT_ANSWER_WINDOW
    served_flush: float = 10.0  # seconds between writes of served marks to the store (one batch per pool)
    max_age: float = 60.0  # seconds before the pool client looks for new shards and other processes' marks

    def __post_init__(self):
        if not self.redis:
            raise SettingError("FARM_REDIS: not set; the service keeps issued captchas in Redis so that several "
                               "service processes agree: set FARM_REDIS=redis://host:6379/0 (or a Redis FARM_BROKER)")
        if not self.redis.startswith(("redis://", "rediss://", "unix://")):
            raise SettingError(f"FARM_REDIS: {redact(self.redis)!r} is not a redis:// or rediss:// URL")
        try:
            parse_url(self.redis)  # what the client reads: a port or a db that is no number
        except ValueError as e:
            raise SettingError(f"FARM_REDIS: {redact(self.redis)!r} is not a URL the Redis client reads ({e})") from None
        for name in BOUNDS:
            _check_bound(name, getattr(self, name))

    @classmethod
    def from_env(cls, **overrides) -> "ServiceSettings":
        """The environment's settings; a keyword given (not None) wins over its variable."""
        keys = os.environ.get("FARM_API_KEYS")  # absent: open; present, even empty: must hold keys
        values = {"store": os.environ.get("FARM_STORE") or None, "redis": redis_url(),
                  "ttl": _seconds("FARM_CAPTCHA_TTL", DEFAULT_TTL),
                  "api_keys": {} if keys is None else parse_api_keys(keys)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def redis_url(value: str | None = None) -> str:
    """FARM_REDIS, else FARM_BROKER when it is a Redis, else ''."""
    if value:
        return value
    if os.environ.get("FARM_REDIS"):
        return os.environ["FARM_REDIS"]
    broker = os.environ.get("FARM_BROKER", "")
    return broker if broker.startswith(("redis://", "rediss://")) else ""


def _check_bound(name: str, value) -> None:
    """SettingError naming the setting, where it is set and its bound, for a value out of (0, highest]."""
    highest, where, why = BOUNDS[name]
    whole = name in _WHOLE
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
        raise SettingError(f"{name} ({where}): {value!r} is not a {'whole ' if whole else ''}number of seconds")
    if not (math.isfinite(value) and 0 < value <= highest):
        raise SettingError(f"{name} ({where}): {value} seconds is out of bounds; give more than 0 and at most "
                           f"{highest} ({why})")


def _seconds(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise SettingError(f"{name}: {value!r} is not a positive whole number of seconds")
    return int(value)


def parse_api_keys(value: str) -> dict[str, str]:
    """`shop=k1,forum=k2` -> {platform: key}; at least one. Errors name the platform, never the key."""
    keys: dict[str, str] = {}
    for number, item in enumerate((i.strip() for i in value.split(",")), start=1):
        if not item:
            continue
        platform, sep, key = item.partition("=")
        platform, key = platform.strip(), key.strip()
        if not sep or not _PLATFORM.match(platform):
            raise SettingError(f"FARM_API_KEYS: entry {number} is not platform=key with a platform name of "
                               f"lower-case letters, digits, '-' or '_' (like shop=...)")
        if platform in keys:
            raise SettingError(f"FARM_API_KEYS: platform {platform!r} is given twice")
        if len(key) < MIN_KEY_CHARS:
            raise SettingError(f"FARM_API_KEYS: the key of {platform!r} is shorter than {MIN_KEY_CHARS} characters; "
                               f"make one with `openssl rand -hex 16`")
        if key in keys.values():
            raise SettingError(f"FARM_API_KEYS: the key of {platform!r} is another platform's too; give each its own")
        keys[platform] = key
    if not keys:  # "," or blanks: a typo or an empty secret must not open the API to anyone
        raise SettingError("FARM_API_KEYS: set but holds no key; give platform=key entries (like "
                           "shop=$(openssl rand -hex 16)), or unset FARM_API_KEYS to run the API open to anyone")
    return keys


def redact(url: str) -> str:
    """A URL fit for a log or an error message: its password replaced by ***."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    except ValueError:  # a port that is no number: say nothing of the rest
        return "(an unreadable URL)"
    return urlunsplit(parts._replace(netloc=netloc))
