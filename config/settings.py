"""Settings read from the environment and an optional TOML file, checked at start."""

from __future__ import annotations

import base64
import binascii
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CONFIG_DIR = Path(__file__).resolve().parent
MODES = ("plain", "compatible", "safe")

# Setting name -> environment variable. The TOML file uses the setting names.
ENV_NAMES = {
    "token": "WECHAT_TOKEN",
    "app_id": "WECHAT_APPID",
    "app_secret": "WECHAT_APPSECRET",
    "aes_key": "WECHAT_AES_KEY",
    "aes_key_previous": "WECHAT_AES_KEY_PREVIOUS",
    "message_mode": "WECHAT_MODE",
    "api_base_url": "WECHAT_API_BASE",
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "timezone": "HALL_TIMEZONE",
    "reply_budget_s": "REPLY_BUDGET_S",
    "dialog_ttl_s": "DIALOG_TTL_S",
    "max_body_bytes": "MAX_BODY_BYTES",
    "host": "BOT_HOST",
    "port": "BOT_PORT",
    "staff_tokens": "STAFF_TOKENS",
    "worker_nice": "WORKER_NICE",
}


class SettingsError(ValueError):
    """Raised with one line per missing or wrong setting."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid settings:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Settings:
    token: str = ""
    app_id: str = ""
    app_secret: str = ""
    aes_key: str = ""
    aes_key_previous: str = ""
    message_mode: str = "safe"
    api_base_url: str = "https://api.weixin.qq.com"
    database_url: str = "sqlite://data/civic.sqlite3"
    redis_url: str = ""
    timezone: str = "Asia/Shanghai"
    reply_budget_s: float = 4.0
    dialog_ttl_s: int = 600
    max_body_bytes: int = 64 * 1024
    host: str = "127.0.0.1"
    port: int = 8080
    # "secret:window_or_staff_id" pairs, comma separated; empty: the staff API refuses all
    staff_tokens: str = ""
    # Job workers yield the CPU to the webhook (a reply has 5 s, a notice can wait a moment)
    worker_nice: int = 10

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def uses_redis_standin(self) -> bool:
        return not self.redis_url

    def masked(self) -> dict[str, Any]:
        """Return the settings with secrets hidden, for logs and `--show`."""
        secret = {"token", "app_secret", "aes_key", "aes_key_previous", "staff_tokens"}
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = ("***" if value else "") if f.name in secret else value
        return out


def load_settings(
    environ: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
    *,
    needs_wechat: bool = True,
) -> Settings:
    """Build settings from a TOML file (optional) overlaid by the environment, then check them.

    `needs_wechat=False` is for commands that never talk to WeChat (`db`, `menu check`).
    """
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    path = config_file or environ.get("BOT_CONFIG")
    if path:
        try:
            raw.update(tomllib.loads(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise SettingsError([f"config file {path} does not exist"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError([f"config file {path} is not valid TOML: {exc}"]) from None
    for name, env in ENV_NAMES.items():
        if env in environ:
            raw[name] = environ[env]
    unknown = sorted(set(raw) - set(ENV_NAMES))
    problems = [f"unknown setting {name!r}" for name in unknown]
    values = _coerce(raw, problems)
    settings = Settings(**values)
    # Name every problem at once: those of the values that did parse come after the rest.
    problems.extend(check_settings(settings, needs_wechat=needs_wechat))
    if problems:
        raise SettingsError(problems)
    return settings


def _coerce(raw: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    types = {f.name: f.type for f in fields(Settings)}
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in types:
            continue
        kind = {"float": float, "int": int}.get(str(types[name]), str)
        try:
            out[name] = kind(value)
        except (TypeError, ValueError):
            problems.append(f"{ENV_NAMES[name]} must be a {kind.__name__}, got {value!r}")
    return out


def check_settings(s: Settings, *, needs_wechat: bool = True) -> list[str]:
    """Return a readable line for each setting that is missing or wrong."""
    problems = []
    if needs_wechat:
        problems.extend(_check_account(s))
    if s.message_mode not in MODES:
        problems.append(f"WECHAT_MODE must be one of {', '.join(MODES)}, got {s.message_mode!r}")
    for name in ("aes_key", "aes_key_previous"):
        key = getattr(s, name)
        if key and not is_valid_aes_key(key):
            problems.append(f"{ENV_NAMES[name]} must be 43 characters of base64 (EncodingAESKey)")
    if not s.database_url.startswith(("sqlite://", "postgres://", "postgresql://", "asyncpg://")):
        problems.append("DATABASE_URL must start with sqlite:// or postgres://")
    if s.redis_url and not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        problems.append("REDIS_URL must start with redis://, rediss:// or unix://")
    if not s.api_base_url.startswith(("http://", "https://")):
        problems.append("WECHAT_API_BASE must be an http(s) URL")
    try:
        ZoneInfo(s.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"HALL_TIMEZONE {s.timezone!r} is not a known time zone")
    if not 0.5 <= s.reply_budget_s <= 4.8:
        problems.append("REPLY_BUDGET_S must be between 0.5 and 4.8 (WeChat waits 5 s)")
    if s.dialog_ttl_s < 30:
        problems.append("DIALOG_TTL_S must be at least 30")
    if s.max_body_bytes < 1024:
        problems.append("MAX_BODY_BYTES must be at least 1024")
    if not 0 <= s.worker_nice <= 19:
        problems.append(f"WORKER_NICE must be 0-19, got {s.worker_nice}")
    if not 1 <= s.port <= 65535:
        problems.append(f"BOT_PORT must be 1-65535, got {s.port}")
    bad_tokens = [t for t in s.staff_tokens.split(",") if t.strip() and ":" not in t]
    if bad_tokens:
        problems.append(
            f"STAFF_TOKENS entries must be secret:window_or_staff, {len(bad_tokens)} not"
        )
    return problems


def _check_account(s: Settings) -> list[str]:
    problems = []
    if not s.token:
        problems.append("WECHAT_TOKEN is missing (the token set on the platform's page)")
    elif not s.token.isalnum() or not 3 <= len(s.token) <= 32:
        problems.append("WECHAT_TOKEN must be 3-32 letters or digits")
    if not s.app_id:
        problems.append("WECHAT_APPID is missing (starts with wx)")
    if not s.app_secret:
        problems.append("WECHAT_APPSECRET is missing")
    if s.message_mode != "plain" and not s.aes_key:
        problems.append(f"WECHAT_AES_KEY is required in {s.message_mode} mode")
    return problems


def is_valid_aes_key(key: str) -> bool:
    if len(key) != 43:
        return False
    try:
        return len(base64.b64decode(key + "=", validate=True)) == 32
    except (binascii.Error, ValueError):
        return False
