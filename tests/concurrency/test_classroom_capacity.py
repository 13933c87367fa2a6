"""Several processes race for the seats of one activity: never past capacity, one seat each."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from bot.services import Services
from models import classroom
from models.classroom import Activity, SignUp
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL, make_settings

pytestmark = pytest.mark.skipif(
    not (TEST_DATABASE_URL and TEST_REDIS_URL),
    reason="needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL",
)

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 6
CITIZENS_EACH = 12
CAPACITY = 10


async def test_processes_racing_never_pass_capacity(db: str) -> None:
    activity = await classroom.create_activity(
        {
            "code": "race",
            "title": "抢位测试",
            "place": "二楼",
            # Ahead of the real clock the processes read.
            "starts_at": datetime.now(UTC) + timedelta(days=30),
            "capacity": CAPACITY,
        }
    )
    start_at = time.time() + 3  # every process connected before the first sign-up
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    racers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.concurrency.classroom_signer",
            db,
            str(activity.id),
            str(start_at),
            f"p{n}",
            str(CITIZENS_EACH),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for n in range(PROCESSES)
    ]
    results = []
    for racer in racers:
        out, err = await asyncio.wait_for(racer.communicate(), timeout=90)
        assert racer.returncode == 0, err.decode()[-3000:]
        results.append(json.loads(out.decode().strip().splitlines()[-1]))

    await activity.refresh_from_db()
    rows = await SignUp.filter(activity_id=activity.id).values_list("openid", flat=True)
    assert activity.signed_up == len(rows) <= CAPACITY
    assert len(set(rows)) == len(rows)
    held = Counter(openid for result in results for openid in result["taken"])
    assert all(held[f"o-same-{i}"] <= 1 for i in range(4))
    assert sorted(held.elements()) == sorted(rows)
    refusals: Counter[str] = Counter()
    for result in results:
        refusals.update(result["refused"])
    # Far more candidates than seats: the counter turned many away, and nothing else failed.
    assert refusals["activity_full"] >= CAPACITY
    assert set(refusals) <= {"activity_full", "already_signed_up"}
    assert activity.capacity == CAPACITY
    assert await Activity.filter(signed_up__gt=CAPACITY).count() == 0


async def test_cancel_takes_the_activity_before_the_sign_up_row(db: str) -> None:
    """A cancel once deleted the sign-up row, then locked the activity: the reverse of a sign-up,
    which locks the activity and then inserts the row, so the two deadlocked on PostgreSQL."""
    activity = await classroom.create_activity(
        {
            "code": "lock-order",
            "title": "退改测试",
            "place": "二楼",
            "starts_at": datetime.now(UTC) + timedelta(days=30),
            "capacity": 3,
        }
    )
    settings = make_settings(database_url=db)
    services = Services(settings=settings, redis=None, texts=None, api=None)  # type: ignore[arg-type]
    await classroom.sign_up(services, activity.id, "o-x")
    url = db.replace("postgres://", "postgresql://", 1)
    holder, probe = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        # Hold the activity's row as a sign-up in progress does.
        await holder.execute("BEGIN")
        await holder.execute(
            "SELECT id FROM classroom_activity WHERE id = $1 FOR UPDATE", activity.id
        )
        cancel = asyncio.ensure_future(classroom.cancel_sign_up(services, activity.id, "o-x"))
        await asyncio.sleep(0.5)  # the cancel runs until it waits for a lock
        assert not cancel.done()
        # The cancel must not hold the sign-up row while it waits for the activity.
        await probe.execute("BEGIN")
        await probe.execute(
            "SELECT id FROM classroom_sign_up WHERE openid = 'o-x' FOR UPDATE NOWAIT"
        )
        await probe.execute("ROLLBACK")
        await holder.execute("ROLLBACK")
        await asyncio.wait_for(cancel, timeout=10)
    finally:
        await holder.close()
        await probe.close()
    await activity.refresh_from_db()
    assert activity.signed_up == 0 == await SignUp.filter(activity_id=activity.id).count()
