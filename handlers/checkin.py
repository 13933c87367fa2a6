"""到厅签到: the hall's QR code, scanned on arrival, checks bookings in and confirms tickets."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from bot import keys
from bot.dispatcher import Context, Reply, Router
from bot.protocol import Incoming
from config.menu import words_of
from models import booking as bookings
from models import booking_flow
from models.booking import Booking, CheckinCode
from models.booking_rules import booking_rules
from models.citizen import Citizen
from models.hall import Category, Hall
from models.queue import Ticket
from models.queue_rules import queue_rules
from models.queue_wait import estimate

if TYPE_CHECKING:
    from bot.wechat_api import WeChatAPI

log = logging.getLogger(__name__)
router = Router("checkin")

SCENE_PREFIX = "checkin"
# Where the platform shows the image of a QR code ticket.
SHOW_QRCODE_URL = "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket="


def scene_of(hall_code: str) -> str:
    return f"{SCENE_PREFIX}:{hall_code}"


@router.scene(SCENE_PREFIX)
async def scan_checkin(ctx: Context) -> Reply:
    """The citizen scanned a hall's code (as a follower, as a new follower or from the menu)."""
    if ctx.incoming.event == "subscribe":
        # The scene takes the follow event from the welcome service: record the follow here.
        await Citizen.follow(ctx.openid, ctx.now())
        await ctx.services.redis.hset(keys.citizen_key(ctx.openid), "following", "1")  # type: ignore[misc]
    code = ctx.incoming.scene.partition(":")[2].strip()
    return await _arrive(ctx, await Hall.get_or_none(code=code) if code else None)


@router.menu("CHECKIN")
async def scan_from_menu(ctx: Context) -> Reply:
    """The menu's scanner read a code: our check-in code's link, or something else."""
    result = scan_result(ctx.incoming)
    if not result:
        return await _explain(ctx)
    found = await CheckinCode.get_or_none(url=result)
    hall = await Hall.get_or_none(id=found.hall_id) if found else None
    return await _arrive(ctx, hall)


def scan_result(incoming: Incoming) -> str:
    info = incoming.raw.get("ScanCodeInfo")
    result = info.get("ScanResult") if isinstance(info, dict) else None
    return result.strip() if isinstance(result, str) else ""


@router.text(*words_of("CHECKIN"))
async def explain_checkin(ctx: Context) -> Reply:
    """Typed words cannot prove arrival: say where the code is and when each booking opens."""
    return await _explain(ctx)


async def _explain(ctx: Context) -> Reply:
    today = ctx.services.today()
    todays = [b for b in await bookings.upcoming_of(ctx.openid, today) if b.local_day == today]
    shown = [await _booking_line(ctx, b) for b in todays]
    return ctx.reply("checkin/how.j2", bookings=shown)


async def _arrive(ctx: Context, hall: Hall | None) -> Reply:
    if hall is None:
        log.warning("check-in code not recognised")
        return ctx.reply("checkin/bad_code.j2")
    arrival = await booking_flow.arrive(ctx.services, ctx.openid, hall)
    log.info(
        "check-in scanned hall=%s checked_in=%d present=%d",
        hall.code,
        len(arrival.checked_in),
        len(arrival.present),
    )
    return ctx.reply(
        "checkin/arrival.j2",
        hall=hall.name,
        checked_in=[_checked_in_line(c) for c in arrival.checked_in],
        early=[await _booking_line(ctx, b) for b in arrival.early],
        late=[await _booking_line(ctx, b) for b in arrival.late],
        elsewhere=[await _booking_line(ctx, b) for b in arrival.elsewhere],
        coming=[await _booking_line(ctx, b) for b in arrival.coming],
        present=[await _ticket_line(t) for t in arrival.present],
    )


def _checked_in_line(done: booking_flow.CheckedIn) -> dict[str, Any]:
    return {
        "number": done.ticket.number,
        "status": done.ticket.status,
        "category": done.category.name,
        "ahead": done.ahead,
        "wait_min": done.wait_min,
    }


async def _ticket_line(ticket: Ticket) -> dict[str, Any]:
    category = await Category.get(id=ticket.category_id)
    waits = await estimate(ticket, category.code, queue_rules())
    return {
        "number": ticket.number,
        "status": ticket.status,
        "category": category.name,
        "ahead": waits.ahead,
        "wait_min": waits.wait_min,
    }


async def _booking_line(ctx: Context, booking: Booking) -> dict[str, Any]:
    hall = await Hall.get(id=booking.hall_id)
    category = await Category.get(id=booking.category_id)
    tz = ctx.services.settings.tz
    opens, closes = booking_flow.window_of(booking, booking_rules(), hall, tz)
    return {
        "hall": hall.name,
        "category": category.name,
        "month": booking.local_day.month,
        "day": booking.local_day.day,
        "slot": bookings.clock(booking.start_min),
        "from": opens.astimezone(tz).strftime("%H:%M"),
        "until": closes.astimezone(tz).strftime("%H:%M"),
    }


async def create_codes(api: WeChatAPI) -> list[dict[str, str]]:
    """Create each hall's permanent check-in code through the API and keep its link."""
    made = []
    for hall in await Hall.all().prefetch_related("categories"):
        if not hall.categories:
            continue  # nothing to check in to: the self-service area takes no numbers
        scene = scene_of(hall.code)
        answer = await api.create_qrcode(scene, permanent=True)
        ticket, url = str(answer["ticket"]), str(answer["url"])
        await CheckinCode.update_or_create(
            {"hall_id": hall.id, "ticket": ticket, "url": url}, scene=scene
        )
        image = SHOW_QRCODE_URL + quote(ticket, safe="")
        made.append(
            {"hall": hall.code, "scene": scene, "ticket": ticket, "url": url, "image": image}
        )
    log.info("check-in codes created count=%d", len(made))
    return made
