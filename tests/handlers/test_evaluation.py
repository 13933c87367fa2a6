"""服务评价 in chat: the invitation at a ticket's finish, one rating, bad-review follow-ups."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
import time_machine
from aiohttp.test_utils import TestClient

from bot.platform_sim import Platform
from bot.services import Services
from config.menu import entries
from handlers.evaluation import parse_rating
from models import feedback, queue
from models.citizen import Citizen
from models.feedback import Evaluation, FollowUp
from models.notice import Notice
from models.queue import Ticket, Window
from tests.bot.test_staff_api import ADMIN, W01, post
from tests.conftest import OPENID, WeChat
from tests.models.test_queue import MONDAY_10, local, take


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    """Monday 2 March 2026, 10:00 in the hall."""
    with time_machine.travel(MONDAY_10, tick=False) as traveller:
        yield traveller


async def finish_by_staff(client: TestClient, openid: str | None = OPENID) -> Ticket:
    """Take a number, and have staff member "admin" call and finish it at W01 through the API."""
    ticket = await take(openid)
    if not (await Window.get(code="W01")).is_open:
        status, _ = await post(client, "/windows/W01/open", ADMIN)
        assert status == 200
    status, called = await post(client, "/windows/W01/call-next", ADMIN)
    assert (status, called["ticket"]["id"]) == (200, ticket.id)
    status, body = await post(client, f"/windows/W01/tickets/{ticket.id}/finish", ADMIN)
    assert (status, body["status"]) == (200, "done")
    return await Ticket.get(id=ticket.id)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("5", (5, "")),
        ("4 窗口人员很耐心", (4, "窗口人员很耐心")),
        ("5分", (5, "")),
        ("5星好评", (5, "好评")),
        ("１，等太久", (1, "等太久")),
        ("满意", (4, "")),
        ("不满意，排队太久", (2, "排队太久")),
        ("非常不满意", (1, "")),
        ("基本满意", (3, "")),
        ("Very satisfied", (5, "")),
        ("五分。", (5, "")),
        ("五星好评", (5, "好评")),
        ("两星，太慢了", (2, "太慢了")),
        ("一般", (3, "")),
        ("三号窗口在哪", None),
        ("3号窗口在哪", None),
        ("3 号窗口", None),
        ("6", None),
        ("35", None),
        ("满意度调查", None),
        ("取号", None),
    ],
)
def test_ratings_are_read_as_citizens_type_them(
    words: str, expected: tuple[int, str] | None
) -> None:
    assert parse_rating(words) == expected


async def test_finishing_a_ticket_invites_its_holder_to_rate(
    app_client: TestClient, clock: time_machine.Coordinates
) -> None:
    ticket = await finish_by_staff(app_client)

    notice = await Notice.get(ref=f"ticket:{ticket.id}", kind="service_rate_invite")
    assert notice.openid == OPENID
    assert notice.data["fields"]["thing1"] == "民生服务"
    assert notice.data["fields"]["thing2"] == "1号窗口"
    evaluation = await Evaluation.get(ticket_id=ticket.id)
    assert (evaluation.level, evaluation.window_code, evaluation.staff) == (None, "W01", "admin")


async def test_on_site_ticket_gets_no_invitation(
    app_client: TestClient, clock: time_machine.Coordinates
) -> None:
    ticket = await finish_by_staff(app_client, openid=None)

    assert not await Evaluation.filter(ticket_id=ticket.id).exists()
    assert not await Notice.filter(kind="service_rate_invite").exists()


async def test_reply_with_a_number_rates_the_service_just_finished(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    ticket = await finish_by_staff(app_client)

    reply = await wechat.say("5 办事很快")

    assert "非常满意" in reply and "A001" in reply and "1号窗口" in reply
    # A rating with its comment ended on 您的意见已记录: nothing said what to do next.
    assert reply.rstrip().endswith("回复“帮助”查看全部服务，或点击下方菜单。")
    evaluation = await Evaluation.get(ticket_id=ticket.id)
    assert (evaluation.level, evaluation.comment, evaluation.source) == (5, "办事很快", "citizen")
    assert evaluation.category_id == ticket.category_id
    assert not await FollowUp.exists()


async def test_rating_then_comment_keeps_both(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    ticket = await finish_by_staff(app_client)

    first = await wechat.say("4")
    second = await wechat.say("希望多开一个窗口")

    assert "回复文字" in first
    assert "已记录" in second
    evaluation = await Evaluation.get(ticket_id=ticket.id)
    assert (evaluation.level, evaluation.comment) == (4, "希望多开一个窗口")


async def test_a_service_word_after_rating_is_not_taken_as_comment(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    ticket = await finish_by_staff(app_client)
    await wechat.say("5")

    reply = await wechat.say("取号")

    assert "请回复序号" in reply  # answered by 提前取号
    assert (await Evaluation.get(ticket_id=ticket.id)).comment == ""


async def test_a_cancel_typed_where_a_comment_is_asked_cancels_and_is_no_comment(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    """取消E001 typed at 服务评价's free text, or after a rating, was kept as the comment
    (已收到您对中心的意见) and the number stayed in the queue."""
    served = await finish_by_staff(app_client)
    held = await take(OPENID, category="tax")
    await wechat.say("5")

    after_rating = await wechat.say(f"取消{held.number}")

    assert f"已取消 {held.number}" in after_rating
    assert (await Ticket.get(id=held.id)).status == "cancelled"
    assert (await Evaluation.get(ticket_id=served.id)).comment == ""
    again = await take(OPENID, category="tax")
    assert "没有待评价的服务" in await wechat.tap("EVALUATION")  # the hall's free text
    in_hall_dialog = await wechat.say(f"取消{again.number}")
    assert f"已取消 {again.number}" in in_hall_dialog
    assert not await Evaluation.filter(subject="hall").exists()


async def test_one_rating_per_ticket(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    ticket = await finish_by_staff(app_client)
    await wechat.say("5")
    await wechat.say("跳过")

    again = await wechat.say("非常不满意")
    number = await wechat.say("1")

    assert "没有待评价的服务" in again
    assert "感谢您的评价" not in number  # the help list's first entry now
    assert (await Evaluation.get(ticket_id=ticket.id)).level == 5
    assert await Evaluation.filter(ticket_id=ticket.id).count() == 1


async def test_two_ratings_racing_leave_one(
    app_client: TestClient, services: Services, clock: time_machine.Coordinates
) -> None:
    ticket = await finish_by_staff(app_client)
    evaluation = await Evaluation.get(ticket_id=ticket.id)

    results = await asyncio.gather(
        feedback.rate(services, OPENID, evaluation.id, 5),
        feedback.rate(services, OPENID, evaluation.id, 1),
        return_exceptions=True,
    )

    refused = [r for r in results if isinstance(r, feedback.AlreadyRated)]
    assert len(refused) == 1
    await evaluation.refresh_from_db()
    assert evaluation.level in (5, 1)
    assert await FollowUp.filter(evaluation_id=evaluation.id).count() == (evaluation.level == 1)


async def test_invitation_is_made_once_per_ticket(
    app_client: TestClient, services: Services, clock: time_machine.Coordinates
) -> None:
    ticket = await finish_by_staff(app_client)

    again = await feedback.invite(services, ticket)
    swept = await feedback.invite_finished(services)

    assert (again, swept) == (None, 0)
    assert await Evaluation.filter(ticket_id=ticket.id).count() == 1
    assert await Notice.filter(kind="service_rate_invite").count() == 1


async def test_sweep_invites_a_ticket_finished_without_the_hook(
    app_client: TestClient, services: Services, clock: time_machine.Coordinates
) -> None:
    ticket = await take(OPENID)
    window = await queue.open_window(await Window.get(code="W01"), MONDAY_10, None)
    await queue.call_next(window, MONDAY_10, "window:W01")
    await queue.finish(window, ticket.id, MONDAY_10, "window:W01")

    swept = await feedback.invite_missed({"services": services})

    assert swept == 1
    assert await Notice.filter(ref=f"ticket:{ticket.id}", kind="service_rate_invite").exists()


async def test_bad_rating_opens_a_follow_up_with_its_deadlines(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    ticket = await finish_by_staff(app_client)

    reply = await wechat.say("2 等了一个小时")

    evaluation = await Evaluation.get(ticket_id=ticket.id)
    follow_up = await FollowUp.get(evaluation_id=evaluation.id)
    assert follow_up.case_no in reply
    assert follow_up.visit_due_at == MONDAY_10 + timedelta(days=1)
    # Five working days after Monday 2 March 2026: Monday 9 March, to its end.
    assert follow_up.fix_due_at == local(9, 23, 59, 59)
    assert "2026-03-09" in reply


async def test_admin_answer_is_pushed_and_citizen_reviews_once(
    app_client: TestClient,
    wechat: WeChat,
    services: Services,
    clock: time_machine.Coordinates,
) -> None:
    await finish_by_staff(app_client)
    await wechat.say("1 态度不好")
    await wechat.say("跳过")
    follow_up = await FollowUp.get()

    status, body = await post(
        app_client, f"/admin/follow-ups/{follow_up.id}/answer", ADMIN, {"answer": "已约谈整改"}
    )

    assert (status, body["status"], body["answered_by"]) == (200, "answered", "admin")
    notice = await Notice.get(ref=f"followup:{follow_up.id}", kind="complaint_answered")
    assert notice.data["fields"]["character_string1"] == follow_up.case_no
    assert notice.data["fields"]["thing2"] == "已约谈整改"
    listing = await wechat.say("追评")
    assert f"追评 {follow_up.case_no}" in listing
    number = next(line.split(".")[0] for line in listing.splitlines() if follow_up.case_no in line)
    assert "追加评价" in await wechat.say(number)
    assert "追评" in await wechat.say("4 态度好多了")
    await follow_up.refresh_from_db()
    assert (follow_up.status, follow_up.review_level) == ("reviewed", 4)
    assert follow_up.review_comment == "态度好多了"
    with pytest.raises(feedback.ReviewNotOpen):
        await feedback.review(services, OPENID, follow_up.id, 5)


async def test_window_token_cannot_answer_a_follow_up(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await finish_by_staff(app_client)
    await wechat.say("1")
    follow_up = await FollowUp.get()

    status, body = await post(
        app_client, f"/admin/follow-ups/{follow_up.id}/answer", W01, {"answer": "x"}
    )

    assert (status, body["error"]) == (403, "admins_only")
    assert (await FollowUp.get(id=follow_up.id)).status == "open"


async def test_follow_up_list_shows_deadlines_and_overdue(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await finish_by_staff(app_client)
    await wechat.say("2")
    clock.move_to(MONDAY_10 + timedelta(days=2))

    response = await app_client.get("/api/staff/admin/follow-ups", headers=ADMIN)
    body = await response.json()

    (case,) = body["cases"]
    assert case["is_visit_overdue"] is True and case["is_fix_overdue"] is False
    assert case["evaluation"]["level"] == 2 and case["evaluation"]["window"] == "W01"
    assert case["evaluation"]["staff"] == "admin"
    assert "openid" not in str(body)

    status, visited = await post(
        app_client, f"/admin/follow-ups/{case['id']}/visit", ADMIN, {"note": "电话回访"}
    )
    assert (status, visited["status"], visited["is_visit_overdue"]) == (200, "visited", False)


async def test_menu_lists_services_of_the_last_days(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    first = await finish_by_staff(app_client, OPENID)
    second = await finish_by_staff(app_client, OPENID)
    await Ticket.filter(id=first.id).update(openid=OPENID)

    listing = await wechat.tap("EVALUATION")

    assert first.number in listing and second.number in listing
    assert "对中心整体服务" in listing
    picked = await wechat.say("2")
    assert first.number in picked and "打分" in picked
    assert "满意" in await wechat.say("3")
    assert (await Evaluation.get(ticket_id=first.id)).level == 3
    assert (await Evaluation.get(ticket_id=second.id)).level is None


async def test_bare_rating_days_later_goes_through_the_menu(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    ticket = await finish_by_staff(app_client)
    clock.move_to(MONDAY_10 + timedelta(days=3))

    reply = await wechat.say("满意")
    number = await wechat.say("5")

    assert "回复“评价”" in reply
    assert "到厅签到" in number  # the help list's fifth entry, not a rating
    assert (await Evaluation.get(ticket_id=ticket.id)).level is None
    listing = await wechat.tap("EVALUATION")
    assert ticket.number in listing and "打分" in listing


async def test_services_not_rated_in_seven_days_count_as_basically_satisfied(
    app_client: TestClient, services: Services, clock: time_machine.Coordinates
) -> None:
    ticket = await finish_by_staff(app_client)
    clock.move_to(MONDAY_10 + timedelta(days=6, hours=23))
    assert await feedback.default_unrated({"services": services}) == 0

    clock.move_to(MONDAY_10 + timedelta(days=7, minutes=1))
    assert await feedback.default_unrated({"services": services}) == 1

    evaluation = await Evaluation.get(ticket_id=ticket.id)
    assert (evaluation.level, evaluation.source) == (3, "default")
    assert not await FollowUp.exists()


async def test_monthly_bad_review_rate(
    app_client: TestClient, services: Services, clock: time_machine.Coordinates
) -> None:
    levels = [5, 4, 2, 1, 3]
    for i, level in enumerate(levels):
        ticket = await finish_by_staff(app_client, f"o-rate-{i}")
        evaluation = await Evaluation.get(ticket_id=ticket.id)
        await feedback.rate(services, f"o-rate-{i}", evaluation.id, level)
    await feedback.rate_hall(services, "o-hall", 1, "")

    response = await app_client.get(
        "/api/staff/admin/evaluations/stats", params={"month": "2026-03"}, headers=ADMIN
    )
    stats = await response.json()

    assert (stats["total"], stats["bad"], stats["bad_rate"]) == (5, 2, 0.4)
    assert stats["by_level"] == {"5": 1, "4": 1, "3": 1, "2": 1, "1": 1}
    assert stats["by_window"]["W01"] == {"total": 5, "bad": 2, "bad_rate": 0.4}
    response = await app_client.get(
        "/api/staff/admin/evaluations/stats", params={"month": "2026-04"}, headers=ADMIN
    )
    assert (await response.json())["total"] == 0


async def test_hall_comment_without_a_level(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    intro = await wechat.tap("EVALUATION")
    assert "没有待评价的服务" in intro

    reply = await wechat.say("导办台的志愿者很热情")

    assert "感谢" in reply
    evaluation = await Evaluation.get(subject="hall")
    assert (evaluation.level, evaluation.comment) == (None, "导办台的志愿者很热情")
    response = await app_client.get(
        "/api/staff/admin/evaluations",
        params={"month": "2026-03", "subject": "hall"},
        headers=ADMIN,
    )
    assert [e["comment"] for e in (await response.json())["evaluations"]] == [
        "导办台的志愿者很热情"
    ]


async def test_number_after_a_timed_out_list_is_not_a_rating(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    ticket = await finish_by_staff(app_client)
    await wechat.tap("QUEUE_TAKE")
    clock.move_to(MONDAY_10 + timedelta(minutes=30))

    reply = await wechat.say("2")

    assert "超时" in reply
    assert (await Evaluation.get(ticket_id=ticket.id)).level is None


async def test_turned_off_invitation_is_not_sent(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await Citizen.create(openid=OPENID, muted_notices=["service_rate_invite"])

    ticket = await finish_by_staff(app_client)

    notice = await Notice.get(ref=f"ticket:{ticket.id}", kind="service_rate_invite")
    assert (notice.status, notice.last_error) == ("skipped", "turned off")
    assert "打分" in await wechat.tap("EVALUATION")


async def test_spoken_score_rates_the_service(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    ticket = await finish_by_staff(app_client)

    reply = await wechat.send(Platform.voice(OPENID, "五分，非常好。"))

    assert reply is not None and "非常满意" in reply["Content"]
    evaluation = await Evaluation.get(ticket_id=ticket.id)
    assert (evaluation.level, evaluation.comment) == (5, "非常好")


async def test_failed_invitation_does_not_fail_the_finish(
    app_client: TestClient,
    services: Services,
    clock: time_machine.Coordinates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(ticket: Ticket) -> tuple[str, str]:
        raise RuntimeError("database went away")

    monkeypatch.setattr(feedback, "served_by", broken)
    ticket = await finish_by_staff(app_client)  # asserts the finish answered 200
    monkeypatch.undo()
    assert not await Evaluation.filter(ticket_id=ticket.id).exists()

    assert await feedback.invite_missed({"services": services}) == 1
    assert await Notice.filter(ref=f"ticket:{ticket.id}", kind="service_rate_invite").exists()


async def test_number_without_an_invitation_picks_from_the_help_list(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    """A score the help list's numbers would have shadowed: with no invitation, they pick."""
    reply = await wechat.say("3")

    assert reply == await wechat.tap("QUEUE_STATUS")
    assert not await Evaluation.exists()


async def test_a_number_picked_from_the_help_list_shown_after_an_invitation_is_no_rating(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    """After 回复数字1-5为本次服务打分, a citizen said 你好 and picked 1 from the list it showed:
    the 1 was taken as 非常不满意 and opened a work order against the window."""
    await finish_by_staff(app_client)
    clock.shift(timedelta(minutes=2))
    assert "回复序号" in await wechat.say("你好")
    clock.shift(timedelta(seconds=30))

    reply = await wechat.say("1")

    assert reply == await wechat.tap(next(iter(entries())))
    assert not await Evaluation.filter(level__isnull=False).exists()
    assert not await FollowUp.exists()


async def test_a_number_after_an_invitation_that_came_after_the_help_list_rates(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    assert "回复序号" in await wechat.say("你好")
    clock.shift(timedelta(minutes=5))
    await finish_by_staff(app_client)
    clock.shift(timedelta(seconds=30))

    reply = await wechat.say("5")

    assert "非常满意" in reply
    assert await Evaluation.filter(level=5).exists()
