"""提醒设置: the "almost your turn" threshold, the notices a citizen wants, and the language."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.exceptions import RedisError
from tortoise.exceptions import IntegrityError

from bot import keys
from bot.errors import CitizenError
from bot.texts import DEFAULT_LANGUAGE, LANGUAGES
from models.citizen import Citizen
from models.queue_rules import queue_rules

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

# The people-ahead counts a citizen may choose for "almost your turn".
NEAR_AHEAD_MIN = 1
NEAR_AHEAD_MAX = 10
# Notices a citizen may turn off, in the order the settings list them. The others answer
# something the citizen did (a number taken, a call to a window, an answer to a complaint)
# and always go out.
OPTIONAL_NOTICES = (
    "queue_near",
    "booking_reminder",
    "application_progress",
    "service_rate_invite",
    "classroom_reminder",
)


class ThresholdOutOfRange(CitizenError):
    template = "reminders/bad_threshold.j2"


@dataclass(frozen=True, slots=True)
class Preferences:
    """What a citizen chose, with the hall's defaults filled in."""

    language: str
    near_ahead: int
    is_default_near: bool
    muted: tuple[str, ...]

    def wants(self, kind: str) -> bool:
        return kind not in self.muted


async def _citizen(openid: str) -> Citizen:
    """Return the citizen's row; one who followed before the account kept rows gets one now."""
    citizen = await Citizen.get_or_none(openid=openid)
    if citizen is not None:
        return citizen
    try:
        return await Citizen.create(openid=openid)
    except IntegrityError:
        return await Citizen.get(openid=openid)


async def preferences_of(openid: str) -> Preferences:
    citizen = await _citizen(openid)
    chosen = citizen.near_ahead
    default = queue_rules().near_ahead_default
    muted = tuple(k for k in OPTIONAL_NOTICES if k in (citizen.muted_notices or []))
    language = citizen.language if citizen.language in LANGUAGES else DEFAULT_LANGUAGE
    near = default if chosen is None else int(chosen)
    return Preferences(language, near, chosen is None, muted)


async def set_near_ahead(openid: str, count: int) -> Preferences:
    """Choose how many people ahead "almost your turn" comes (1-10)."""
    if not NEAR_AHEAD_MIN <= count <= NEAR_AHEAD_MAX:
        raise ThresholdOutOfRange(low=NEAR_AHEAD_MIN, high=NEAR_AHEAD_MAX)
    citizen = await _citizen(openid)
    await Citizen.filter(id=citizen.id).update(near_ahead=count)
    log.info("threshold chosen near_ahead=%d", count)
    return await preferences_of(openid)


async def toggle_notice(openid: str, kind: str) -> bool:
    """Turn an optional notice off when on, on when off; return whether it is now wanted."""
    if kind not in OPTIONAL_NOTICES:
        raise ValueError(f"{kind!r} cannot be turned off")
    citizen = await _citizen(openid)
    muted = [k for k in (citizen.muted_notices or []) if k in OPTIONAL_NOTICES]
    is_wanted = kind in muted
    muted = [k for k in muted if k != kind] if is_wanted else [*muted, kind]
    await Citizen.filter(id=citizen.id).update(muted_notices=muted)
    log.info("notice chosen kind=%s wanted=%s", kind, is_wanted)
    return is_wanted


async def set_language(services: Services, openid: str, language: str) -> None:
    """Choose the language of replies and notices, in the database and in the webhook's cache.

    The webhook reads the language from the Redis hash on every message; notices read the
    database row. Both are written here, the row first, so a lost cache write costs a reply in
    the old language at worst and the next visit to 提醒设置 puts it right.
    """
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}")
    citizen = await _citizen(openid)
    await Citizen.filter(id=citizen.id).update(language=language)
    await cache_language(services, openid, language)
    log.info("language chosen language=%s", language)


async def keep_languages(services: Services) -> dict[str, str]:
    """Put every chosen language from the database back into the citizens' hashes.

    Then mark them kept (keys.LANGUAGES_KEPT_KEY), and return them by openid: also when Redis
    fails meanwhile, which leaves them unmarked for the next message to try again. HSETNX
    leaves a language chosen, or forgotten, while this ran as it is now. A Redis that loses
    its data again before the end loses this load's token too: no mark then either.
    """
    rows = await Citizen.exclude(language=DEFAULT_LANGUAGE).values_list("openid", "language")
    chosen = {str(openid): str(language) for openid, language in rows if language in LANGUAGES}
    token = f"{keys.LANGUAGES_KEPT_KEY}:loading:{secrets.token_hex(8)}"
    items = list(chosen.items())
    try:
        await services.redis.set(token, "1", ex=KEEP_TOKEN_TTL_S)
        for start in range(0, len(items), KEEP_CHUNK):
            async with services.redis.pipeline(transaction=False) as pipe:
                for openid, language in items[start : start + KEEP_CHUNK]:
                    pipe.hsetnx(keys.citizen_key(openid), "language", language)
                await pipe.execute()
        marked = await services.redis.eval(_MARK_IF_TOKEN_KEPT, 2, token, keys.LANGUAGES_KEPT_KEY)  # type: ignore[misc]
    except RedisError as exc:
        log.warning("languages not put back error=%s", type(exc).__name__)
        return chosen
    log.info("languages put back citizens=%d marked=%s", len(chosen), bool(marked))
    return chosen


# Hashes written per round trip when the languages are put back, and how long a load's token
# may live (a load that takes longer marks nothing).
KEEP_CHUNK = 500
KEEP_TOKEN_TTL_S = 300
_MARK_IF_TOKEN_KEPT = """
if redis.call('DEL', KEYS[1]) == 1 then
    redis.call('SET', KEYS[2], '1')
    return 1
end
return 0
"""


async def forget(services: Services, openid: str) -> None:
    """Drop what a citizen who unfollowed had chosen, and give back their classroom seats.

    The cached language is set to the default, not deleted: a load putting the languages
    back meanwhile (keep_languages) then leaves it so.
    """
    from models import classroom

    await Citizen.filter(openid=openid).update(
        near_ahead=None, muted_notices=[], language=DEFAULT_LANGUAGE
    )
    await cache_language(services, openid, DEFAULT_LANGUAGE)
    released = await classroom.release_all(services, openid)
    log.info("citizen forgotten seats_released=%d", released)


async def cache_language(services: Services, openid: str, language: str) -> None:
    try:
        await services.redis.hset(keys.citizen_key(openid), "language", language)  # type: ignore[misc]
    except RedisError:
        log.warning("language not cached")
