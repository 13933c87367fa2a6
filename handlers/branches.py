"""网点导航: the branch halls and the 24-hour area, and the ones nearest to the citizen."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote

from redis.exceptions import RedisError

from bot import keys
from bot.dispatcher import Context, Reply, Router
from bot.protocol import MAX_REPLY_TEXT_BYTES
from config.menu import words_of
from handlers.hall_info import OpenStatus, hall_status, reply_within
from models.hall import Hall, cached_halls

log = logging.getLogger(__name__)
router = Router("branches")

NEAREST_COUNT = 3
# Farther than this from every hall, the citizen is not around Songshan Lake: say so.
FAR_KM = 30.0
# Words asking for the nearest place rather than the list.
NEARBY_WORDS = ("附近", "最近的网点", "离我最近")
# Two reported positions this close (degrees, about 10 m) are the same place.
SAME_PLACE_DEG = 1e-4


@dataclass(frozen=True, slots=True)
class HallView:
    """A hall as a reply shows it: its facts, whether it is open, how far and how to get there."""

    hall: Hall
    status: OpenStatus
    distance_km: float | None
    map_url: str


def map_url(hall: Hall) -> str:
    """Return a map link that opens navigation to the hall (GCJ-02, as WeChat reports)."""
    if hall.latitude is None or hall.longitude is None:
        return ""
    return (
        f"https://uri.amap.com/marker?position={hall.longitude:.6f},{hall.latitude:.6f}"
        f"&name={quote(hall.name)}"
    )


def nearest_halls(
    halls: list[Hall], latitude: float, longitude: float, count: int = NEAREST_COUNT
) -> list[tuple[Hall, float]]:
    """Return the `count` halls nearest to a point, nearest first, with their distance."""
    placed = [(hall, hall.distance_km(latitude, longitude)) for hall in halls]
    known = [(hall, km) for hall, km in placed if km is not None]
    return sorted(known, key=lambda pair: pair[1])[:count]


async def _view(ctx: Context, hall: Hall, distance_km: float | None = None) -> HallView:
    status = await hall_status(hall, ctx.services.local_now())
    return HallView(hall, status, distance_km, map_url(hall))


def _fit(ctx: Context, template: str, views: list[HallView], **values: object) -> Reply:
    """Show every hall in full if that fits one reply; otherwise a shorter form of as many."""
    text = ctx.render(template, views=views, hidden=0, is_compact=False, **values)
    if len(text.encode("utf-8")) <= MAX_REPLY_TEXT_BYTES:
        return Reply(text)
    return reply_within(ctx, template, "views", views, is_compact=True, **values)


async def _remembered_position(ctx: Context) -> tuple[float, float] | None:
    stored = await ctx.services.redis.get(keys.location_key(ctx.openid))
    if not stored:
        return None
    try:
        latitude, longitude = (float(part) for part in str(stored).split(","))
    except ValueError:
        return None
    return latitude, longitude


async def _remember_position(ctx: Context, point: tuple[float, float]) -> None:
    value = f"{point[0]:.6f},{point[1]:.6f}"
    await ctx.services.redis.set(keys.location_key(ctx.openid), value, ex=keys.LOCATION_TTL_S)


async def _reply_nearest(ctx: Context, point: tuple[float, float]) -> Reply:
    halls = await cached_halls()
    nearest = nearest_halls(halls, *point)
    if not nearest:
        return ctx.reply("branches/ask_location.j2", has_no_positions=True)
    views = [await _view(ctx, hall, km) for hall, km in nearest]
    return _fit(ctx, "branches/nearest.j2", views, is_far=nearest[0][1] > FAR_KM)


@router.menu("BRANCHES")
@router.text(*words_of("BRANCHES"), *(w for w in NEARBY_WORDS if w not in words_of("BRANCHES")))
async def list_branches(ctx: Context) -> Reply:
    """List the branches and the 24-hour area; "附近" lists the nearest to a known position."""
    if any(word in ctx.words for word in NEARBY_WORDS):
        point = await _remembered_position(ctx)
        if point is None:
            return ctx.reply("branches/ask_location.j2", has_no_positions=False)
        return await _reply_nearest(ctx, point)
    halls = [hall for hall in await cached_halls() if hall.kind != "main"]
    views = [await _view(ctx, hall) for hall in halls]
    return _fit(ctx, "branches/list.j2", views)


@router.menu("BRANCH_NEAREST")
async def nearest_to_selected(ctx: Context) -> Reply:
    """The citizen picked a place in the menu's location picker: the halls nearest to it."""
    point = ctx.incoming.location
    if point is None:
        return ctx.reply("branches/ask_location.j2", has_no_positions=False)
    await _remember_position(ctx, point)
    # WeChat may also post the picked place as a location message: answer only once.
    answered = f"{point[0]:.6f},{point[1]:.6f}"
    await ctx.services.redis.set(
        keys.location_answered_key(ctx.openid), answered, ex=keys.LOCATION_ANSWERED_TTL_S
    )
    return await _reply_nearest(ctx, point)


@router.message("location")
async def nearest_to_sent(ctx: Context) -> Reply:
    """The citizen sent a location: the halls nearest to it, with distance and a map link."""
    point = ctx.incoming.location
    if point is None:
        return ctx.reply("branches/ask_location.j2", has_no_positions=False)
    answered = await ctx.services.redis.get(keys.location_answered_key(ctx.openid))
    if answered and _same_place(str(answered), point):
        await ctx.services.redis.delete(keys.location_answered_key(ctx.openid))
        return Reply()
    await _remember_position(ctx, point)
    return await _reply_nearest(ctx, point)


def _same_place(stored: str, point: tuple[float, float]) -> bool:
    try:
        latitude, longitude = (float(part) for part in stored.split(","))
    except ValueError:
        return False
    return abs(latitude - point[0]) < SAME_PLACE_DEG and abs(longitude - point[1]) < SAME_PLACE_DEG


@router.event("location")
async def remember_reported_position(ctx: Context) -> Reply:
    """The position WeChat reports every few seconds: kept briefly for "附近", never answered."""
    point = ctx.incoming.location
    if point is None:
        return Reply()
    try:
        await _remember_position(ctx, point)
    except RedisError as exc:
        # A reply here would be shown every 5 s; losing one position costs nothing.
        log.warning("position not kept reason=%s", type(exc).__name__)
    return Reply()
