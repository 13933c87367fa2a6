"""市民课堂 in chat and for administrators: seats within capacity, cancel, the reminder."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import time_machine
from aiohttp.test_utils import TestClient

from bot.platform_sim import Platform
from bot.services import Services
from models import classroom
from models.classroom import Activity, SignUp
from models.notice import Notice
from tests.bot.test_staff_api import ADMIN, W01, post
from tests.conftest import OPENID, WeChat
from tests.models.test_queue import MONDAY_10, local


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(MONDAY_10, tick=False) as traveller:
        yield traveller


async def activity(
    title: str = "社保线上办理入门", starts_at: datetime | None = None, capacity: int = 3
) -> Activity:
    starts_at = starts_at or local(5, 14)
    return await classroom.create_activity(
        {
            "code": f"test-{title}",
            "title": title,
            "place": "二楼市民课堂",
            "starts_at": starts_at,
            "ends_at": starts_at + timedelta(hours=1),
            "capacity": capacity,
        }
    )


async def sign_up_by_chat(wechat: WeChat) -> str:
    listing = await wechat.tap("CLASSROOM")
    assert listing.splitlines()[1].startswith("1. "), listing
    await wechat.say("1")
    return await wechat.say("报名")


async def test_list_shows_time_place_and_seats(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await activity(capacity=30)

    listing = await wechat.tap("CLASSROOM")

    assert "1. 社保线上办理入门" in listing
    assert "2026-03-05（周四）14:00-15:00" in listing
    assert "二楼市民课堂" in listing and "余 30/30 位" in listing
    # The sample activities of config/classroom.toml follow.
    assert "个税APP年度汇算实操课" in listing


async def test_sign_up_takes_a_seat_and_schedules_the_reminder(
    wechat: WeChat, services: Services, clock: time_machine.Coordinates
) -> None:
    held = await activity()

    detail_and_done = await sign_up_by_chat(wechat)

    assert "报名成功" in detail_and_done and "前一天会提醒" in detail_and_done
    await held.refresh_from_db()
    assert held.signed_up == 1
    assert await SignUp.filter(activity_id=held.id, openid=OPENID).exists()
    assert services.jobs is not None
    job_ids = [key for key in await services.jobs.keys("arq:job:classroom_remind:*")]
    assert len(job_ids) == 1
    assert "您已报名" in await wechat.tap("CLASSROOM")


async def test_reminder_job_checks_the_seat_when_it_runs(
    wechat: WeChat, services: Services, clock: time_machine.Coordinates
) -> None:
    held = await activity()
    await sign_up_by_chat(wechat)
    starts_ts = int(held.starts_at.timestamp())
    seat = await SignUp.get(activity_id=held.id, openid=OPENID)
    clock.move_to(local(4, 18))
    ctx = {"services": services}

    # The queued job may run as well, in this process's worker: either way one notice is made.
    sent = [await classroom.remind(ctx, held.id, seat.id, starts_ts) for _ in range(2)]

    assert sent.count(True) <= 1 and sent[1] is False
    notice = await Notice.get(kind="classroom_reminder")
    assert notice.data["fields"] == {
        "thing1": "社保线上办理入门",
        "thing2": "二楼市民课堂",
        "time3": "2026-03-05 14:00",
    }


async def test_reminder_after_cancelling_is_not_sent(
    wechat: WeChat, services: Services, clock: time_machine.Coordinates
) -> None:
    held = await activity()
    await sign_up_by_chat(wechat)
    seat = await SignUp.get(activity_id=held.id, openid=OPENID)

    reply = await wechat.say("取消报名")
    clock.move_to(local(4, 18))
    starts_ts = int(held.starts_at.timestamp())
    sent = await classroom.remind({"services": services}, held.id, seat.id, starts_ts)
    swept = await classroom.remind_due({"services": services})

    assert "已取消报名" in reply
    await held.refresh_from_db()
    assert held.signed_up == 0
    assert (sent, swept) == (False, 0)
    assert not await Notice.filter(kind="classroom_reminder").exists()


async def test_reminder_job_id_and_notice_ref_name_no_openid(
    wechat: WeChat, services: Services, clock: time_machine.Coordinates
) -> None:
    """Both reach the logs (arq's job lines, the push log); they named the citizen's openid."""
    held = await activity()
    await sign_up_by_chat(wechat)
    assert services.jobs is not None
    job_ids = [key for key in await services.jobs.keys("arq:job:classroom_remind:*")]
    clock.move_to(local(4, 18, 5))

    assert await classroom.remind_due({"services": services}) == 1

    notice = await Notice.get(kind="classroom_reminder")
    assert job_ids and notice.openid == OPENID
    assert all(OPENID.encode() not in key for key in job_ids) and OPENID not in notice.ref
    assert notice.ref.startswith(f"classroom:{held.id}:")


async def test_sweep_sends_a_reminder_whose_job_was_lost(
    wechat: WeChat, services: Services, clock: time_machine.Coordinates
) -> None:
    await activity()
    await sign_up_by_chat(wechat)
    clock.move_to(local(4, 17, 59))
    assert await classroom.remind_due({"services": services}) == 0

    clock.move_to(local(4, 18, 5))
    assert await classroom.remind_due({"services": services}) == 1
    assert await classroom.remind_due({"services": services}) == 0


async def test_full_activity_refuses_the_next_citizen(
    wechat: WeChat, services: Services, clock: time_machine.Coordinates
) -> None:
    held = await activity(capacity=1)
    await classroom.sign_up(services, held.id, "o-first")

    listing = await wechat.tap("CLASSROOM")
    detail = await wechat.say("1")

    assert "已满（1 位）" in listing
    assert "名额已满" in detail
    with pytest.raises(classroom.ActivityFull):
        await classroom.sign_up(services, held.id, OPENID)


async def test_signing_up_twice_is_refused(
    wechat: WeChat, services: Services, clock: time_machine.Coordinates
) -> None:
    held = await activity()
    await sign_up_by_chat(wechat)

    with pytest.raises(classroom.AlreadySignedUp):
        await classroom.sign_up(services, held.id, OPENID)
    await held.refresh_from_db()
    assert held.signed_up == 1


async def test_sign_up_closes_before_the_start(
    services: Services, clock: time_machine.Coordinates
) -> None:
    held = await activity(starts_at=MONDAY_10 + timedelta(minutes=20))

    with pytest.raises(classroom.SignUpClosed):
        await classroom.sign_up(services, held.id, OPENID)


async def test_many_at_once_never_pass_capacity(
    services: Services, clock: time_machine.Coordinates
) -> None:
    held = await activity(capacity=5)

    results = await asyncio.gather(
        *(classroom.sign_up(services, held.id, f"o-{i}") for i in range(20)),
        *(classroom.sign_up(services, held.id, "o-0") for _ in range(5)),
        return_exceptions=True,
    )

    taken = [r for r in results if isinstance(r, Activity)]
    assert len(taken) == 5
    assert all(isinstance(r, classroom.ClassroomError) for r in results if r not in taken)
    await held.refresh_from_db()
    assert held.signed_up == 5 == await SignUp.filter(activity_id=held.id).count()


async def test_cancel_by_number_when_holding_several(
    wechat: WeChat, services: Services, clock: time_machine.Coordinates
) -> None:
    first = await activity("讲座一", local(5, 10))
    second = await activity("讲座二", local(6, 10))
    await classroom.sign_up(services, first.id, OPENID)
    await classroom.sign_up(services, second.id, OPENID)

    mine = await wechat.say("我的报名")
    which = await wechat.say("取消报名")
    done = await wechat.say("取消报名2")

    assert "1. 讲座一" in mine and "2. 讲座二" in mine
    assert "取消报名+序号" in which
    assert "讲座二" in done
    assert [a.title for a in await classroom.signed_activities(OPENID, services.now())] == [
        "讲座一"
    ]


async def test_unfollow_gives_the_seats_back(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    held = await activity()
    await sign_up_by_chat(wechat)

    await wechat.send(Platform.event(OPENID, "unsubscribe"))

    await held.refresh_from_db()
    assert held.signed_up == 0
    assert not await SignUp.filter(openid=OPENID).exists()


async def test_admin_creates_changes_and_cancels_an_activity(
    app_client: TestClient, wechat: WeChat, services: Services, clock: time_machine.Coordinates
) -> None:
    status, made = await post(
        app_client,
        "/admin/activities",
        ADMIN,
        {
            "title": "防诈骗讲座",
            "place": "社区服务中心",
            "starts_at": "2026-03-07T15:00:00+08:00",
            "capacity": 2,
        },
    )
    assert (status, made["seats_left"], made["status"]) == (201, 2, "open")
    await classroom.sign_up(services, made["id"], "o-a")
    await classroom.sign_up(services, made["id"], "o-b")

    path = f"/admin/activities/{made['id']}"
    response = await app_client.patch(f"/api/staff{path}", headers=ADMIN, json={"capacity": 1})
    refused = await response.json()
    response = await app_client.patch(f"/api/staff{path}", headers=ADMIN, json={"capacity": 4})
    grown = await response.json()
    status, cancelled = await post(app_client, f"{path}/cancel", ADMIN)

    assert (refused["error"], refused["signed_up"]) == ("capacity_below_sign_ups", 2)
    assert (grown["capacity"], grown["seats_left"]) == (4, 2)
    assert cancelled["status"] == "cancelled"
    assert "防诈骗讲座" not in await wechat.tap("CLASSROOM")
    clock.move_to(local(6, 18, 1))
    assert await classroom.remind_due({"services": services}) == 0


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"title": "x", "place": "y", "starts_at": "2026-03-07T15:00", "capacity": 0}, "capacity"),
        ({"title": "x", "place": "y", "starts_at": "tomorrow", "capacity": 5}, "starts_at"),
        ({"title": "", "place": "y", "starts_at": "2026-03-07T15:00", "capacity": 5}, "title"),
        ({"title": "x", "place": "y", "starts_at": "2026-03-01T15:00", "capacity": 5}, ""),
        ({"title": "x", "place": "y", "capacity": 5}, ""),
        ({"title": "x", "place": "y", "starts_at": "2026-03-07T15:00", "capacity": 5, "x": 1}, ""),
    ],
)
async def test_admin_activity_with_bad_fields_is_refused(
    app_client: TestClient, body: dict[str, object], error: str, clock: time_machine.Coordinates
) -> None:
    status, answer = await post(app_client, "/admin/activities", ADMIN, body)

    # A field's own shape is named after it; rules across fields are a bad request.
    assert (status, answer["error"]) == (400, f"{error}_invalid" if error else "bad_request")


async def test_window_token_cannot_manage_activities(
    app_client: TestClient, clock: time_machine.Coordinates
) -> None:
    response = await app_client.get("/api/staff/admin/activities", headers=W01)

    assert response.status == 403


async def test_moving_an_activity_moves_its_reminder(
    app_client: TestClient, wechat: WeChat, services: Services, clock: time_machine.Coordinates
) -> None:
    held = await activity()
    await sign_up_by_chat(wechat)
    old_ts = int(held.starts_at.timestamp())

    response = await app_client.patch(
        f"/api/staff/admin/activities/{held.id}",
        headers=ADMIN,
        json={"starts_at": "2026-03-06T14:00:00+08:00", "ends_at": "2026-03-06T15:00:00+08:00"},
    )
    assert response.status == 200
    await held.refresh_from_db()
    clock.move_to(local(5, 18))
    ctx = {"services": services}

    seat = await SignUp.get(activity_id=held.id, openid=OPENID)

    assert await classroom.remind(ctx, held.id, seat.id, old_ts) is False
    await classroom.remind(ctx, held.id, seat.id, int(held.starts_at.timestamp()))
    notice = await Notice.get(kind="classroom_reminder")
    assert notice.data["fields"]["time3"] == "2026-03-06 14:00"
