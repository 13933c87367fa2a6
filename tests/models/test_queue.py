"""Queue numbers: the daily counter, the guards, the quota and the opening hours."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from tortoise import Tortoise
from tortoise.exceptions import IntegrityError

from models import queue
from models.calendar import Closure
from models.db import close_db, init_db
from models.hall import Category, Hall
from models.queue import NumberCounter, Ticket, TicketEvent, Window
from models.queue_rules import (
    AlreadyHolding,
    CategoryNotServed,
    HallClosed,
    HallClosing,
    QuotaUsedUp,
    load_rules,
    queue_rules,
)

BEIJING = ZoneInfo("Asia/Shanghai")
RULES = queue_rules()


def local(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """Return a time in March 2026 in the hall's zone (2 March 2026 is a Monday)."""
    return datetime(2026, 3, day, hour, minute, second, tzinfo=BEIJING)


MONDAY_10 = local(2, 10)


async def hall_of(code: str = "main") -> Hall:
    return await Hall.get(code=code)


async def category_of(code: str = "livelihood") -> Category:
    return await Category.get(code=code)


async def take(
    openid: str | None,
    at: datetime = MONDAY_10,
    *,
    hall: str = "main",
    category: str = "livelihood",
    source: str = "remote",
    **options: object,
) -> Ticket:
    """Issue a ticket as the rules do, without the opening-hours check of a remote take."""
    return await queue.issue(
        await hall_of(hall),
        await category_of(category),
        at,
        source=source,
        actor="citizen" if openid else "window:W01",
        openid=openid,
        **options,  # type: ignore[arg-type]
    )


async def opened(code: str, at: datetime = MONDAY_10) -> Window:
    window = await Window.get(code=code)
    return await queue.open_window(window, at, None)


async def test_numbers_count_up_per_category_with_its_prefix(db: str) -> None:
    first = await take("o1")
    second = await take("o2")
    tax = await take("o1", category="tax")

    assert [first.number, second.number, tax.number] == ["A001", "A002", "E001"]


async def test_numbers_are_per_hall(db: str) -> None:
    main = await take("o1")
    branch = await take("o2", hall="community")

    assert (main.number, branch.number) == ("A001", "A001")


async def test_numbers_restart_on_the_next_local_day(db: str) -> None:
    monday = await take("o1", local(2, 17))
    tuesday = await take("o2", local(3, 9, 30))

    assert (monday.number, monday.local_day) == ("A001", date(2026, 3, 2))
    assert (tuesday.number, tuesday.local_day) == ("A001", date(2026, 3, 3))


async def test_local_day_is_the_halls_not_utc(db: str) -> None:
    """07:30 in Beijing is 23:30 the day before in UTC: the ticket belongs to the Beijing day."""
    at = local(3, 7, 30)
    assert at.astimezone(ZoneInfo("UTC")).date() == date(2026, 3, 2)

    ticket = await take("o1", at)

    assert ticket.local_day == date(2026, 3, 3)


async def test_onsite_tickets_share_the_counter_with_remote_ones(db: str) -> None:
    remote = await take("o1")
    onsite = await take(None, source="onsite")

    assert (remote.number, onsite.number) == ("A001", "A002")
    assert onsite.active_key is None


async def test_concurrent_takes_get_distinct_numbers(db: str) -> None:
    tickets = await asyncio.gather(*(take(f"o{i}") for i in range(60)))

    numbers = sorted(t.number for t in tickets)
    assert numbers == [f"A{i:03d}" for i in range(1, 61)]


async def test_counter_survives_a_restart(db: str) -> None:
    """The database holds the counter: a new process continues where the last one stopped."""
    await take("o1")
    await close_db()
    await init_db(db)

    ticket = await take("o2")

    assert ticket.number == "A002"


async def test_same_number_twice_is_refused_by_the_database(db: str) -> None:
    """The unique (hall, category, day, seq) is the last guard, whatever the counter says."""
    first = await take("o1")
    await NumberCounter.filter(hall_id=first.hall_id).update(seq=0)

    with pytest.raises(IntegrityError):
        await take("o2")

    assert await Ticket.filter(number="A001").count() == 1


async def test_failed_take_gives_back_its_number(db: str) -> None:
    """A take refused inside the transaction leaves no gap: the counter rolls back with it."""
    await take("o1")
    with pytest.raises(AlreadyHolding):
        await take("o1")

    again = await take("o2")

    assert again.number == "A002"


async def test_one_active_ticket_per_citizen_per_category(db: str) -> None:
    first = await take("o1")

    with pytest.raises(AlreadyHolding) as refused:
        await take("o1")

    assert refused.value.context["number"] == first.number
    other_category = await take("o1", category="tax")
    assert other_category.number == "E001"


async def test_concurrent_double_take_by_one_citizen_gives_one_ticket(db: str) -> None:
    results = await asyncio.gather(*(take("o1") for _ in range(5)), return_exceptions=True)

    tickets = [r for r in results if isinstance(r, Ticket)]
    refusals = [r for r in results if isinstance(r, AlreadyHolding)]
    assert (len(tickets), len(refusals)) == (1, 4)
    assert await Ticket.filter(openid="o1").count() == 1


async def test_one_place_per_category_across_halls(db: str) -> None:
    await take("o1")

    with pytest.raises(AlreadyHolding):
        await take("o1", hall="community")


async def test_cancelled_ticket_frees_the_category(db: str) -> None:
    first = await take("o1")
    await queue.cancel(first, MONDAY_10)

    second = await take("o1")

    assert second.number == "A002"


async def test_yesterdays_ticket_does_not_block_today(db: str) -> None:
    old = await take("o1", local(2, 16))

    today = await take("o1", local(3, 9, 5))

    assert today.number == "A001"
    assert (await Ticket.get(id=old.id)).status == "expired"


async def test_remote_quota_is_per_category_per_hall_per_day(db: str) -> None:
    rules = replace(queue_rules(), quotas={"main": {"livelihood": 2}})
    await take("o1", rules=rules)
    await take("o2", rules=rules)

    with pytest.raises(QuotaUsedUp):
        await take("o3", rules=rules)

    assert (await take("o3", category="tax", rules=rules)).number == "E001"
    assert (await take("o3", local(3, 10), rules=rules)).number == "A001"


async def test_quota_refusal_burns_no_number_and_onsite_goes_on(db: str) -> None:
    rules = replace(queue_rules(), quotas={"main": {"livelihood": 1}})
    await take("o1", rules=rules)
    with pytest.raises(QuotaUsedUp):
        await take("o2", rules=rules)

    onsite = await take(None, source="onsite", rules=rules)

    assert onsite.number == "A002"


async def test_concurrent_takes_never_pass_the_quota(db: str) -> None:
    rules = replace(queue_rules(), quotas={"main": {"livelihood": 10}})
    results = await asyncio.gather(
        *(take(f"o{i}", rules=rules) for i in range(25)), return_exceptions=True
    )

    tickets = [r for r in results if isinstance(r, Ticket)]
    assert len(tickets) == 10
    assert all(isinstance(r, QuotaUsedUp) for r in results if not isinstance(r, Ticket))


async def test_zero_quota_refuses_every_remote_take(db: str) -> None:
    rules = replace(queue_rules(), quotas={"main": {"livelihood": 0}})

    with pytest.raises(QuotaUsedUp):
        await take("o1", rules=rules)


async def test_category_the_hall_does_not_serve_is_refused(db: str) -> None:
    with pytest.raises(CategoryNotServed):
        await take("o1", hall="party_masses", category="tax")


async def test_take_is_recorded_as_an_event(db: str) -> None:
    ticket = await take("o1")

    events = await TicketEvent.filter(ticket_id=ticket.id).values_list(
        "action", "to_status", "actor"
    )

    assert events == [("take", "waiting", "citizen")]


@pytest.mark.parametrize(
    ("at", "refusal"),
    [
        (local(2, 8, 59), HallClosed),
        (local(2, 17, 30), HallClosing),
        (local(2, 17, 59), HallClosing),
        (local(2, 18, 0), HallClosed),
        (local(8, 16, 31), HallClosing),  # Sunday closes at 17:00
    ],
)
async def test_remote_take_needs_the_hall_open_and_not_about_to_close(
    db: str, at: datetime, refusal: type[Exception]
) -> None:
    hall = await hall_of()

    with pytest.raises(refusal):
        await queue.check_open_for_remote(hall, at, queue_rules())


@pytest.mark.parametrize("at", [local(2, 9, 0), local(2, 17, 29), local(8, 16, 29)])
async def test_remote_take_allowed_inside_the_hours(db: str, at: datetime) -> None:
    await queue.check_open_for_remote(await hall_of(), at, queue_rules())


async def test_closed_refusal_says_when_the_hall_opens_next(db: str) -> None:
    branch = await hall_of("community")  # weekdays only
    saturday = local(7, 10)

    with pytest.raises(HallClosed) as refused:
        await queue.check_open_for_remote(branch, saturday, queue_rules())

    assert refused.value.context["opens"] == "周一 09:00"


async def test_refusals_while_shut_read_the_calendar_once_not_per_take(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each 取号 before opening worked out the next fortnight's openings: 5 ms a message."""
    from models import calendar

    reads: list[tuple[str, object, object]] = []
    real = calendar.closures_between

    async def counted(hall_code: str, first: object, last: object) -> dict[object, str]:
        reads.append((hall_code, first, last))
        return await real(hall_code, first, last)  # type: ignore[arg-type]

    monkeypatch.setattr(calendar, "closures_between", counted)
    queue.forget_calling_halls()
    branch = await hall_of("community")
    for minute in range(5):
        with pytest.raises(HallClosed) as refused:
            await queue.check_open_for_remote(branch, local(7, 10, minute), queue_rules())
        assert refused.value.context["opens"] == "周一 09:00"

    assert len(reads) == 2  # the day itself, then the fortnight ahead; then kept
    queue.forget_calling_halls()  # a seed or a new closure: read again
    with pytest.raises(HallClosed):
        await queue.check_open_for_remote(branch, local(7, 10), queue_rules())
    assert len(reads) == 4


async def test_no_remote_take_on_a_statutory_holiday(db: str) -> None:
    """The main hall opens at weekends, not on 劳动节 (1 May 2026, a Friday)."""
    hall = await hall_of()

    with pytest.raises(HallClosed) as refused:
        await queue.check_open_for_remote(hall, datetime(2026, 5, 1, 10, tzinfo=BEIJING), RULES)

    assert refused.value.context["why"] == "劳动节"


async def test_make_up_working_day_opens_with_weekday_hours(db: str) -> None:
    """A branch shut at weekends opens on a make-up Saturday (14 February 2026) as on weekdays."""
    branch = await hall_of("community")

    await queue.check_open_for_remote(branch, datetime(2026, 2, 14, 10, tzinfo=BEIJING), RULES)


async def test_no_remote_take_on_a_closure_day(db: str) -> None:
    await Closure.create(hall_code="main", day=date(2026, 3, 2), reason="设备检修")

    with pytest.raises(HallClosed) as refused:
        await queue.check_open_for_remote(await hall_of(), MONDAY_10, RULES)

    assert refused.value.context["why"] == "设备检修"
    assert refused.value.context["opens"] == "明天 09:00"


async def test_windows_are_seeded_from_config(db: str) -> None:
    rules = load_rules()
    codes = await Window.all().values_list("code", flat=True)

    assert sorted(codes) == sorted(w["code"] for w in rules.windows)
    window = await Window.get(code="W03")
    assert window.serves("livelihood") and window.serves("public_utilities")


async def test_seeded_window_categories_exist_in_their_hall(db: str) -> None:
    for window in await Window.all().prefetch_related("hall__categories"):
        served = {c.code for c in window.hall.categories}
        assert set(window.categories) <= served, window.code


def test_placeholders_follow_the_driver() -> None:
    class Caps:
        def __init__(self, dialect: str) -> None:
            self.dialect = dialect

    class Conn:
        def __init__(self, dialect: str) -> None:
            self.capabilities = Caps(dialect)

    sql = "VALUES (?, ?) WHERE x <= ?"
    assert queue._placeholders(Conn("postgres"), sql) == "VALUES ($1, $2) WHERE x <= $3"  # type: ignore[arg-type]
    assert queue._placeholders(Conn("sqlite"), sql) == sql  # type: ignore[arg-type]


async def test_counter_row_keeps_the_days_remote_takes(db: str) -> None:
    await take("o1")
    await take(None, source="onsite")
    await take("o2")

    counter = await NumberCounter.get(local_day=date(2026, 3, 2))

    assert (counter.seq, counter.remote_taken) == (3, 2)


async def test_migrations_made_the_guarding_constraints(db: str) -> None:
    """The guards live in the schema: a second active key is refused by the database itself."""
    first = await take("o1")
    conn = Tortoise.get_connection("default")
    with pytest.raises(IntegrityError):
        await Ticket.create(
            using_db=conn,
            hall_id=first.hall_id,
            category_id=first.category_id,
            issued_category_id=first.category_id,
            local_day=first.local_day,
            seq=99,
            number="A099",
            active_key=first.active_key,
            queued_at=MONDAY_10 + timedelta(minutes=1),
        )


async def test_a_remote_take_reads_its_wait_with_the_same_call_on_postgresql(db: str) -> None:
    """One round trip per take on PostgreSQL (take_tickets); SQLite reads it afterwards."""
    from models.queue_wait import estimate

    await take("o-ahead-1")
    await take("o-booked", source="booking", priority=queue.BOOKING_PRIORITY)
    await opened("W01")
    rules = queue_rules()
    hall, category = await hall_of(), await category_of()

    ticket, readings = await queue.issue_and_read_wait(
        hall, category, MONDAY_10, openid="o-remote", rules=rules
    )

    waits = await estimate(ticket, category.code, rules, holder="o-remote", readings=readings)
    if Tortoise.get_connection("default").capabilities.dialect == "postgres":
        assert readings is not None and readings.ahead == 2
        assert [name for name, is_open in readings.windows if is_open] == ["1号窗口"]
    else:
        assert readings is None
    assert (waits.ahead, waits.windows) == (2, ["1号窗口"])
    assert ticket.number == "A003"


async def test_a_take_whose_readings_fail_after_the_commit_still_gives_its_number(
    db: str,
) -> None:
    """take_tickets commits before its readings: a failure there left the ticket taken while the
    citizen was told nothing had been recorded (and a retake said they held a number)."""
    import asyncpg

    from tests.conftest import TEST_DATABASE_URL

    if not TEST_DATABASE_URL:
        pytest.skip("the procedure is PostgreSQL's")
    url = TEST_DATABASE_URL.replace("postgres://", "postgresql://", 1)
    locker, watcher = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        async with locker.transaction():
            # The last reading waits on this lock; cancelling it stands for any failure there.
            await locker.execute("LOCK TABLE citizen IN ACCESS EXCLUSIVE MODE")
            taking = asyncio.ensure_future(
                queue.issue_and_read_wait(
                    await hall_of(),
                    await category_of(),
                    MONDAY_10,
                    openid="o-victim",
                    rules=queue_rules(),
                )
            )
            blocked: list[asyncpg.Record] = []
            for _ in range(200):
                await asyncio.sleep(0.02)
                blocked = await watcher.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query LIKE 'CALL take_tickets%'"
                )
                if blocked:
                    break
            assert blocked, "the take never reached its readings"
            await watcher.execute("SELECT pg_cancel_backend($1)", blocked[0]["pid"])
            ticket, readings = await taking
    finally:
        await locker.close()
        await watcher.close()

    assert (ticket.number, readings) == ("A001", None)
    assert (await Ticket.get(openid="o-victim")).id == ticket.id
