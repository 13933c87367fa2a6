"""预约办事 and 我的预约: book a slot in four replies, list, cancel and move bookings."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from bot.dispatcher import Context, Reply, Router, is_number
from config.menu import words_of
from models import booking as bookings
from models import booking_flow
from models.booking import Booking, OfferedDay, Person, Slot
from models.booking_rules import (
    BookingError,
    BookingNotFound,
    SlotFull,
    booking_rules,
    id_digest,
    parse_contact,
)
from models.hall import Category, Hall
from models.preferences import preferences_of
from models.queue import Ticket

log = logging.getLogger(__name__)
router = Router("booking")

PLACE_STATE = "booking.place"
DAY_STATE = "booking.day"
SLOT_STATE = "booking.slot"
CONTACT_STATE = "booking.contact"
CONFIRM_STATE = "booking.confirm"
YES_WORDS = frozenset({"1", "确认", "确定", "是", "是的", "好", "好的", "对", "ok", "yes", "y"})
CHANGE_WORDS = frozenset({"2", "修改", "改", "修改联系人", "换人"})
_PICK = r"(\d{1,2}|\d{6})"


# 预约办事: category -> date -> slot -> contact -> confirm.


async def places() -> list[tuple[Hall, Category]]:
    """Return every hall and category that takes bookings, in the order the menu lists them."""
    found = []
    halls = await Hall.exclude(kind="self_service").prefetch_related("categories")
    for hall in halls:
        for category in sorted(hall.categories, key=lambda c: (c.sort, c.id)):
            found.append((hall, category))
    return found


@router.menu("BOOKING")
@router.text(*words_of("BOOKING"))
async def start_booking(ctx: Context) -> Reply:
    """List the halls and categories as numbers; a category named in the words narrows it."""
    await bookings.check_may_book(ctx.openid, ctx.services.today(), booking_rules())
    options = await places()
    named = [p for p in options if p[1].name in ctx.words]
    options = named or options
    if len(options) == 1:
        return await _offer_days(ctx, *options[0])
    await ctx.dialog.start(PLACE_STATE, options=[[h.id, c.id] for h, c in options])
    groups: dict[int, dict[str, Any]] = {}
    for index, (hall, category) in enumerate(options, 1):
        group = groups.setdefault(hall.id, {"hall": hall.name, "items": []})
        group["items"].append({"index": index, "name": category.name})
    return ctx.reply("booking/choose_place.j2", groups=list(groups.values()))


def _index(ctx: Context, count: int) -> int | None:
    """Return the 0-based choice a reply like "2" makes, or None."""
    words = ctx.words.removeprefix("第").removesuffix("个")
    if is_number(words) and 1 <= int(words) <= count:
        return int(words) - 1
    return None


@router.dialog(PLACE_STATE)
async def choose_place(ctx: Context) -> Reply:
    """The citizen picked a hall and category by its number or its name."""
    options = [tuple(pair) for pair in ctx.dialog.data.get("options", [])]
    index = _index(ctx, len(options))
    if index is None:
        categories = await Category.filter(id__in={c for _, c in options})
        named = {c.id for c in categories if c.name in ctx.words}
        matches = [i for i, (_, c) in enumerate(options) if c in named]
        index = matches[0] if len(matches) == 1 else None
    if index is None:
        return ctx.reply("booking/choose_again.j2", count=len(options))
    hall_id, category_id = options[index]
    return await _offer_days(ctx, await Hall.get(id=hall_id), await Category.get(id=category_id))


async def _offer_days(
    ctx: Context, hall: Hall, category: Category, *, booking: Booking | None = None
) -> Reply:
    now = ctx.services.local_now()
    offered = await bookings.offered_days(hall, category, now, booking_rules())
    if not offered:
        await ctx.dialog.finish()
        release = booking_rules().release_at
        return ctx.reply(
            "booking/no_days.j2",
            hall=hall.name,
            category=category.name,
            release=release.strftime("%H:%M") if release else "",
        )
    data: dict[str, Any] = {"hall_id": hall.id, "category_id": category.id}
    data["days"] = [d.day.isoformat() for d in offered]
    data["booking_id"] = booking.id if booking else None
    await ctx.dialog.start(DAY_STATE, **data)
    return ctx.reply(
        "booking/choose_day.j2",
        hall=hall.name,
        category=category.name,
        days=[_day_view(d, now.date()) for d in offered],
        moving=_booking_view(booking, hall, category, ctx) if booking else None,
    )


def _day_view(offered: OfferedDay, today: date) -> dict[str, Any]:
    day = offered.day
    return {
        "month": day.month,
        "day": day.day,
        "weekday": day.isoweekday(),
        "offset": (day - today).days,
        "kind": offered.opening.kind.kind,
        "holiday": offered.opening.kind.holiday,
        "left": offered.left,
    }


async def _place(ctx: Context) -> tuple[Hall, Category]:
    data = ctx.dialog.data
    return await Hall.get(id=data["hall_id"]), await Category.get(id=data["category_id"])


async def _moving(ctx: Context) -> Booking | None:
    booking_id = ctx.dialog.data.get("booking_id")
    if not booking_id:
        return None
    return await bookings.booking_of(ctx.openid, int(booking_id))


@router.dialog(DAY_STATE)
async def choose_day(ctx: Context) -> Reply:
    """The citizen picked a date; the slots with a place left that day come next."""
    days = [date.fromisoformat(d) for d in ctx.dialog.data.get("days", [])]
    index = _index(ctx, len(days))
    if index is None:
        return ctx.reply("booking/choose_again.j2", count=len(days))
    hall, category = await _place(ctx)
    moving = await _moving(ctx)
    held = await Booking.get_or_none(
        active_key=bookings.active_key(ctx.openid, category.id, days[index])
    )
    if held is not None and (moving is None or held.id != moving.id):
        return ctx.reply(
            "booking/day_taken.j2",
            category=category.name,
            start=bookings.clock(held.start_min),
            code=held.code,
            count=len(days),
        )
    return await _offer_slots(ctx, hall, category, days[index])


async def _offer_slots(
    ctx: Context, hall: Hall, category: Category, day: date, *, was_full: str = ""
) -> Reply:
    now = ctx.services.local_now()
    slots = await bookings.offered_slots(hall, category, day, now, booking_rules())
    if not slots:
        reply = await _offer_days(ctx, hall, category, booking=await _moving(ctx))
        return ctx.reply("booking/day_full.j2", was_full=was_full, then=reply.text or "")
    await ctx.dialog.go(SLOT_STATE, day=day.isoformat(), slots=[s.start_min for s in slots])
    return ctx.reply(
        "booking/choose_slot.j2",
        day=_plain_day(day),
        slots=[_slot_view(s) for s in slots],
        was_full=was_full,
    )


def _plain_day(day: date) -> dict[str, Any]:
    return {"month": day.month, "day": day.day, "weekday": day.isoweekday()}


def _slot_view(slot: Slot) -> dict[str, Any]:
    return {"label": slot.label, "left": slot.left}


@router.dialog(SLOT_STATE)
async def choose_slot(ctx: Context) -> Reply:
    """The citizen picked a slot: a move is made at once, a new booking asks who comes."""
    starts = [int(s) for s in ctx.dialog.data.get("slots", [])]
    index = _index(ctx, len(starts))
    if index is None:
        return ctx.reply("booking/choose_again.j2", count=len(starts))
    hall, category = await _place(ctx)
    day = date.fromisoformat(ctx.dialog.data["day"])
    start = starts[index]
    moving = await _moving(ctx)
    if moving is not None:
        return await _move(ctx, moving, hall, category, day, start)
    profile = await bookings.profile_of(ctx.openid)
    asks_id = booking_rules().asks_id_number(category.code)
    if profile is None or (asks_id and not profile.id_hash):
        return await _ask_contact(ctx, category, start=start, known=profile is not None)
    person = Person(profile.name, profile.mobile, profile.id_last4, profile.id_hash)
    return await _ask_confirm(ctx, hall, category, day, start, person)


async def _ask_contact(
    ctx: Context, category: Category, *, start: int | None = None, known: bool = False
) -> Reply:
    """Ask who comes; a citizen known already needs to send only what is missing."""
    await ctx.dialog.go(CONTACT_STATE, **({"start": start} if start is not None else {}))
    asks_id = booking_rules().asks_id_number(category.code)
    return ctx.reply(
        "booking/ask_contact.j2", asks_id=asks_id, category=category.name, is_known=known
    )


@router.dialog(CONTACT_STATE)
async def give_contact(ctx: Context) -> Reply:
    """The citizen sent a name and a mobile number (and an ID number where one is asked)."""
    hall, category = await _place(ctx)
    asks_id = booking_rules().asks_id_number(category.code)
    given = parse_contact(ctx.incoming.text)
    profile = await bookings.profile_of(ctx.openid)
    name = given.name or (profile.name if profile else "")
    mobile = given.mobile or (profile.mobile if profile else "")
    problems = []
    if given.has_bad_mobile or not mobile:
        problems.append("mobile_bad" if given.has_bad_mobile else "mobile")
    if not name:
        problems.append("name")
    if asks_id and not given.id_number:
        problems.append("id_bad" if given.has_bad_id else "id")
    if problems:
        log.warning("contact refused problems=%s", ",".join(problems))
        return ctx.reply("booking/contact_again.j2", problems=problems, asks_id=asks_id)
    person = Person(name, mobile)
    if given.id_number:
        digest = id_digest(given.id_number, ctx.services.settings.app_secret)
        person = Person(name, mobile, given.id_number[-4:].upper(), digest)
    day = date.fromisoformat(ctx.dialog.data["day"])
    return await _ask_confirm(ctx, hall, category, day, int(ctx.dialog.data["start"]), person)


async def _ask_confirm(
    ctx: Context, hall: Hall, category: Category, day: date, start: int, person: Person
) -> Reply:
    person_data = {"name": person.name, "mobile": person.mobile}
    person_data.update(id_last4=person.id_last4, id_hash=person.id_hash)
    await ctx.dialog.go(CONFIRM_STATE, start=start, person=person_data)
    rules = booking_rules()
    starts = bookings.local_start(day, start, ctx.services.settings.tz)
    return ctx.reply(
        "booking/confirm.j2",
        hall=hall.name,
        category=category.name,
        day=_plain_day(day),
        slot=_label(start),
        name=person.name,
        mobile=person.mobile,
        id_last4=person.id_last4,
        # Said before the citizen confirms: a slot this close cannot be cancelled once booked.
        is_changeable=bookings.is_changeable_at(starts, ctx.services.now(), rules),
        cancel_before_min=rules.cancel_deadline_min,
    )


def _label(start: int) -> str:
    return f"{bookings.clock(start)}-{bookings.clock(start + booking_rules().slot_min)}"


@router.dialog(CONFIRM_STATE)
async def confirm_booking(ctx: Context) -> Reply:
    """Book on "1", change the contact on "2"; a slot taken meanwhile offers the others."""
    hall, category = await _place(ctx)
    if ctx.words in CHANGE_WORDS:
        return await _ask_contact(ctx, category)
    if ctx.words not in YES_WORDS:
        return ctx.reply("booking/confirm_again.j2")
    data = ctx.dialog.data
    day, start = date.fromisoformat(data["day"]), int(data["start"])
    person = Person(**data["person"])
    try:
        booking = await booking_flow.book(
            ctx.services, ctx.openid, hall, category, day, start, person
        )
    except SlotFull:
        log.info("slot taken meanwhile hall=%s day=%s", hall.code, day)
        return await _offer_slots(ctx, hall, category, day, was_full=_label(start))
    except BookingError:
        await ctx.dialog.finish()
        raise
    await ctx.dialog.finish()
    view = _booking_view(booking, hall, category, ctx)
    return ctx.reply("booking/booked.j2", reminders=await _reminders_ahead(ctx, booking), **view)


async def _reminders_ahead(ctx: Context, booking: Booking) -> list[str]:
    """Name the reminders of a booking still to come: past ones and muted ones are not."""
    if not (await preferences_of(ctx.openid)).wants("booking_reminder"):
        return []
    now, tz = ctx.services.now(), ctx.services.settings.tz
    times = booking_flow.reminder_times(booking, booking_rules(), tz)
    return [which for which, at in times.items() if now < at]


def _booking_view(
    booking: Booking, hall: Hall, category: Category, ctx: Context
) -> dict[str, Any]:
    rules = booking_rules()
    tz, now = ctx.services.settings.tz, ctx.services.now()
    opens, closes = booking_flow.window_of(booking, rules, hall, tz)
    return {
        "code": booking.code,
        "hall": hall.name,
        "category": category.name,
        "day": _plain_day(booking.local_day),
        "slot": _label(booking.start_min),
        "name": booking.name,
        "mobile": booking.mobile,
        "id_last4": booking.id_last4,
        "status": booking.status,
        "checkin_from": opens.astimezone(tz).strftime("%H:%M"),
        "checkin_until": closes.astimezone(tz).strftime("%H:%M"),
        "cancel_before_min": rules.cancel_deadline_min,
        # A booking made close to its start may be past the deadline to change it.
        "is_changeable": booking.status == "booked"
        and bookings.is_changeable_at(booking.starts_at, now, rules),
        "remind_before_min": rules.reminder_before_min,
        "phone": hall.phone,
    }


async def _move(
    ctx: Context, booking: Booking, hall: Hall, category: Category, day: date, start: int
) -> Reply:
    try:
        booking = await booking_flow.move(ctx.services, booking, day, start)
    except SlotFull:
        return await _offer_slots(ctx, hall, category, day, was_full=_label(start))
    except BookingError:
        await ctx.dialog.finish()
        raise
    await ctx.dialog.finish()
    return ctx.reply("booking/moved.j2", **_booking_view(booking, hall, category, ctx))


# 我的预约: list, cancel, move.


@router.menu("BOOKING_MINE")
@router.text(*words_of("BOOKING_MINE"))
async def show_my_bookings(ctx: Context) -> Reply:
    """List the coming bookings, numbered; "取消预约" or "改约" acts on the only one."""
    mine = await bookings.upcoming_of(ctx.openid, ctx.services.today())
    changeable = [b for b in mine if b.status == "booked"]
    if ctx.words in ("取消预约", "改约") and len(changeable) == 1:
        return await _act(ctx, "改约" if ctx.words == "改约" else "取消", changeable[0])
    shown = [await _listed(ctx, b) for b in mine]
    rules = booking_rules()
    return ctx.reply(
        "booking/mine.j2",
        bookings=shown,
        # The example the footer gives is a booking it works on.
        first_open=next((i for i, b in enumerate(shown, 1) if b["is_changeable"]), 0),
        cancel_before_min=rules.cancel_deadline_min,
        points_cancel=rules.no_show.points_cancel if rules.no_show.uses_points else 0,
    )


async def _listed(ctx: Context, booking: Booking) -> dict[str, Any]:
    hall = await Hall.get(id=booking.hall_id)
    category = await Category.get(id=booking.category_id)
    view = _booking_view(booking, hall, category, ctx)
    ticket = await Ticket.get_or_none(id=booking.ticket_id) if booking.ticket_id else None
    view["number"] = ticket.number if ticket else ""
    return view


@router.text(pattern=rf"^(取消|改约|改期)(?:预约)?\s*{_PICK}$", is_command=True)
async def change_booking(ctx: Context) -> Reply:
    """Cancel ("取消2") or move ("改约2") the booking listed second, or the one with a code."""
    assert ctx.match is not None
    action, pick = ctx.match.group(1), ctx.match.group(2)
    mine = await bookings.upcoming_of(ctx.openid, ctx.services.today())
    if len(pick) == bookings.CODE_DIGITS:
        chosen = [b for b in mine if b.code == pick]
    else:
        chosen = mine[int(pick) - 1 : int(pick)] if int(pick) >= 1 else []
    if not chosen:
        raise BookingNotFound(pick=pick)
    return await _act(ctx, "改约" if action != "取消" else "取消", chosen[0])


async def _act(ctx: Context, action: str, booking: Booking) -> Reply:
    hall = await Hall.get(id=booking.hall_id)
    category = await Category.get(id=booking.category_id)
    if action == "取消":
        booking = await booking_flow.cancel(ctx.services, booking)
        rules = booking_rules()
        cost = rules.no_show.points_cancel if rules.no_show.uses_points else 0
        view = _booking_view(booking, hall, category, ctx)
        return ctx.reply("booking/cancelled.j2", points_cost=cost, **view)
    await bookings.check_changeable(booking, ctx.services.local_now(), booking_rules())
    return await _offer_days(ctx, hall, category, booking=booking)
