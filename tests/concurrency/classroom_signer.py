"""One process of the classroom race: sign citizens up for an activity, and churn seats."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from bot.services import Services
from models import classroom
from models.db import close_db, init_db
from tests.conftest import make_settings


async def race(
    url: str, activity_id: int, start_at: float, prefix: str, count: int
) -> dict[str, Any]:
    await init_db(url)
    settings = make_settings(database_url=url)
    # Signing up needs the clock and the zone; no job queue: the reminder is the sweep's.
    services = Services(settings=settings, redis=None, texts=None, api=None)  # type: ignore[arg-type]
    taken: list[str] = []
    refused: dict[str, int] = {}
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        # Citizens of their own, and a few that every process signs up and cancels too.
        openids = [f"{prefix}-{i}" for i in range(count)] + [f"o-same-{i}" for i in range(4)]
        for outcome, openid in zip(
            await asyncio.gather(
                *(classroom.sign_up(services, activity_id, o) for o in openids),
                return_exceptions=True,
            ),
            openids,
            strict=True,
        ):
            if isinstance(outcome, classroom.ClassroomError):
                refused[outcome.code] = refused.get(outcome.code, 0) + 1
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                taken.append(openid)
        # Churn: give each seat back and race for it again, many times over.
        for _ in range(12):
            for openid in list(taken):
                await classroom.cancel_sign_up(services, activity_id, openid)
                taken.remove(openid)
            outcomes = await asyncio.gather(
                *(classroom.sign_up(services, activity_id, o) for o in openids),
                return_exceptions=True,
            )
            for outcome, openid in zip(outcomes, openids, strict=True):
                if isinstance(outcome, classroom.ClassroomError):
                    continue
                if isinstance(outcome, BaseException):
                    raise outcome
                taken.append(openid)
    finally:
        await close_db()
    return {"taken": taken, "refused": refused}


def main() -> None:
    url, activity_id, start_at, prefix, count = sys.argv[1:6]
    result = asyncio.run(race(url, int(activity_id), float(start_at), prefix, int(count)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
