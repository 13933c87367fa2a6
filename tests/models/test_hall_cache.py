"""Each process keeps the halls for a few seconds; saving, deleting or seeding drops the copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from models import hall as halls
from models.db import SEED_FILE, seed
from models.hall import Hall, cached_halls, cached_main_hall, forget_halls

pytestmark = pytest.mark.usefixtures("db")


async def test_a_second_read_within_the_ttl_does_not_query_again() -> None:
    first = await cached_main_hall()
    await Hall.filter(kind="main").update(name="改名后")  # no signal: the copy stays

    assert first is not None
    assert await cached_main_hall() is first
    forget_halls()
    assert (await cached_main_hall()).name == "改名后"  # type: ignore[union-attr]


async def test_the_copy_expires_after_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    await cached_halls()
    await Hall.filter(kind="main").update(name="过期后重读")
    monkeypatch.setattr(halls, "HALLS_TTL_S", 0.0)

    assert (await cached_main_hall()).name == "过期后重读"  # type: ignore[union-attr]


async def test_saving_a_hall_refreshes_the_copy() -> None:
    main = await Hall.get(kind="main")
    await cached_halls()
    main.name = "保存后"
    await main.save()

    assert (await cached_main_hall()).name == "保存后"  # type: ignore[union-attr]


async def test_deleting_a_hall_refreshes_the_copy() -> None:
    before = await cached_halls()
    branch = next(hall for hall in before if hall.kind != "main")
    await branch.delete()

    assert branch.code not in {hall.code for hall in await cached_halls()}


async def test_seeding_refreshes_the_copy(tmp_path: Path) -> None:
    await cached_halls()
    changed = tmp_path / "halls.toml"
    text = SEED_FILE.read_text(encoding="utf-8")
    main = await Hall.get(kind="main")
    changed.write_text(text.replace(f'name = "{main.name}"', 'name = "重新导入"', 1), "utf-8")
    assert "重新导入" in changed.read_text(encoding="utf-8")

    await seed(changed)

    assert (await cached_main_hall()).name == "重新导入"  # type: ignore[union-attr]


async def test_a_save_while_a_read_is_on_its_way_is_not_kept_stale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The read in flight finished after the save's forget and kept its older rows for 10 s."""
    import asyncio

    forget_halls()
    real_all = Hall.all
    release = asyncio.Event()

    async def slow_all() -> list[Hall]:
        rows = await real_all()  # read before the save...
        await release.wait()  # ...handed back after it
        return rows

    monkeypatch.setattr(Hall, "all", slow_all)
    reading = asyncio.ensure_future(cached_halls())
    await asyncio.sleep(0.05)
    monkeypatch.setattr(Hall, "all", real_all)
    main = await Hall.get(kind="main")
    main.name = "保存后的名字"
    await main.save()
    release.set()
    await reading

    assert (await cached_main_hall()).name == "保存后的名字"  # type: ignore[union-attr]


async def test_a_saved_hall_reaches_the_queue_at_once() -> None:
    """The queue kept its own copy of the calling halls and their openings for 30 s, which a
    save did not drop: new hours reached takes half a minute late."""
    from models import queue
    from models.queue_rules import HallClosed
    from tests.models.test_queue import MONDAY_10

    [main] = [hall for hall in await queue.calling_halls() if hall.kind == "main"]
    await queue.check_open(main, MONDAY_10)  # open: now kept
    row = await Hall.get(id=main.id)
    row.hours = [{"days": [1, 2, 3, 4, 5], "open": "13:00", "close": "17:00"}]
    await row.save()

    [main] = [hall for hall in await queue.calling_halls() if hall.kind == "main"]
    assert main.hours == row.hours and main.categories._fetched
    with pytest.raises(HallClosed):
        await queue.check_open(main, MONDAY_10)


async def test_requests_finding_the_copy_stale_together_share_one_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rush that found the copy expired sent one read per request, all at once."""
    import asyncio

    forget_halls()
    reads: list[int] = []
    real_all = Hall.all

    async def counted() -> list[Hall]:
        reads.append(1)
        await asyncio.sleep(0.01)  # the read takes a while: the others arrive meanwhile
        return await real_all()

    monkeypatch.setattr(Hall, "all", counted)
    copies = await asyncio.gather(*(cached_halls() for _ in range(20)))

    assert reads == [1] and all(copy is copies[0] for copy in copies)


async def test_concurrent_takes_on_stale_openings_read_the_calendar_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from models import calendar, queue
    from tests.models.test_queue import MONDAY_10

    queue.forget_calling_halls()
    [main] = [hall for hall in await queue.calling_halls() if hall.kind == "main"]
    reads: list[object] = []
    real = calendar.closures_between

    async def counted(hall_code: str, first: object, last: object) -> dict[object, str]:
        reads.append(first)
        await asyncio.sleep(0.01)
        return await real(hall_code, first, last)  # type: ignore[arg-type]

    monkeypatch.setattr(calendar, "closures_between", counted)
    spans = await asyncio.gather(*(queue.check_open(main, MONDAY_10) for _ in range(20)))

    assert len(reads) == 1 and len(set(spans)) == 1


async def test_a_read_left_hanging_by_a_closed_database_does_not_hold_the_next(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read of the openings in flight when its database was closed never ended; the next
    connection's takes joined it and waited past the reply budget."""
    import asyncio

    from models import calendar, queue
    from models.db import close_db, init_db
    from tests.models.test_queue import MONDAY_10

    queue.forget_calling_halls()
    [main] = [hall for hall in await queue.calling_halls() if hall.kind == "main"]
    real = calendar.closures_between
    never = asyncio.Event()

    async def hanging(hall_code: str, first: object, last: object) -> dict[object, str]:
        await never.wait()
        return {}

    monkeypatch.setattr(calendar, "closures_between", hanging)
    left = asyncio.ensure_future(queue.check_open(main, MONDAY_10))
    await asyncio.sleep(0.05)
    await close_db()
    await init_db(db)
    monkeypatch.setattr(calendar, "closures_between", real)

    [main] = [hall for hall in await queue.calling_halls() if hall.kind == "main"]
    assert await asyncio.wait_for(queue.check_open(main, MONDAY_10), 2.0)
    left.cancel()
