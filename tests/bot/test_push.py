"""The push worker: each notice claimed once, sent by a job, retried, blocked or dropped."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from bot import notices, push
from bot.app import SERVICES
from bot.notices import NoticeBook, NoticeBookError, fit, load_notice_book, parse_notice_book
from bot.redis_conn import RedisBatch
from bot.services import Services
from bot.standin import StandIn
from bot.texts import Texts
from models.citizen import Citizen
from models.notice import FINAL_STATES, Notice, NoticeConsent
from tests.conftest import claimed_notice, client_with_worker, make_settings

OPENID = "oPUSH00000000000000000000001"
CALLED = {
    "number": "A005",
    "window": "2号窗口",
    "hall": "松山湖市民服务中心",
    "called_at": "09:32",
}
# The kinds the services send (PRODUCT.md, "The notices it pushes").
SERVICE_KINDS = {
    "ticket_taken",
    "queue_near",
    "ticket_called",
    "ticket_missed",
    "ticket_expired",
    "booking_booked",
    "booking_reminder",
    "booking_cancelled",
    "service_rate_invite",
    "application_progress",
    "certificate_mailed",
    "complaint_answered",
    "classroom_reminder",
}


@pytest.fixture
def book(monkeypatch: pytest.MonkeyPatch) -> NoticeBook:
    """The real notices, with waits short enough for a test."""
    real = load_notice_book()
    fast = replace(real, delivery=replace(real.delivery, backoff_s=(0.05,), max_attempts=3))
    monkeypatch.setattr(notices, "notice_book", lambda: fast)
    return fast


@pytest.fixture
async def client(standin: StandIn, db: str, book: NoticeBook) -> AsyncIterator[TestClient]:
    """The webhook app talking to the stand-in, with a job worker draining its queue."""
    settings = make_settings(database_url=db, api_base_url=standin.url)
    async with client_with_worker(settings) as client:
        yield client


@pytest.fixture
def services(client: TestClient) -> Services:
    return client.app[SERVICES]


async def settled(notice_id: int, wait_s: float = 5.0) -> Notice:
    """Wait until a notice is in a final state and return it."""
    deadline = time.monotonic() + wait_s
    while True:
        notice = await Notice.get(id=notice_id)
        if notice.status in FINAL_STATES or time.monotonic() > deadline:
            return notice
        await asyncio.sleep(0.02)


async def notice_of(ref: str, kind: str = "ticket_called") -> Notice:
    return await Notice.get(ref=ref, kind=kind)


async def call(services: Services, ref: str = "ticket:42", openid: str = OPENID) -> bool:
    return await push.notify(services, kind="ticket_called", openid=openid, ref=ref, values=CALLED)


def templates_to(standin: StandIn, openid: str = OPENID) -> list[dict[str, object]]:
    """Every template send the stand-in received for a citizen, failed ones included."""
    return [r.body for r in standin.records if r.kind == "template" and r.body["touser"] == openid]


async def test_notice_is_sent_with_its_fields_and_idempotency_key(
    services: Services, standin: StandIn
) -> None:
    assert await call(services) is True

    notice = await settled((await notice_of("ticket:42")).id)

    assert notice.status == "sent"
    [record] = standin.sent("template")
    assert record.body["template_id"] == "tmpl_ticket_called_0001"
    assert record.body["client_msg_id"] == "ticket_called:ticket:42"
    assert record.body["data"] == {
        "character_string1": {"value": "A005"},
        "thing2": {"value": "2号窗口"},
        "thing3": {"value": "松山湖市民服务中心"},
        "time4": {"value": "09:32"},
    }
    assert notice.msgid == str(record.answer["msgid"])
    assert notice.sent_at is not None
    assert notice.attempts == 1
    assert notice.data == {}  # the values are not kept once the notice is out


async def test_concurrent_notify_claims_one_notice(services: Services, standin: StandIn) -> None:
    results = await asyncio.gather(*(call(services) for _ in range(12)))

    assert sorted(results) == [False] * 11 + [True]
    [notice] = await Notice.filter(ref="ticket:42", kind="ticket_called")
    assert (await settled(notice.id)).status == "sent"
    await asyncio.sleep(0.3)  # a second job, had there been one, would have sent by now
    assert len(templates_to(standin)) == 1


async def test_same_ref_of_another_kind_is_another_notice(services: Services) -> None:
    taken = {"number": "A5", "category": "民生", "hall": "本厅", "ahead": "3", "taken_at": "9:00"}
    assert await call(services)
    assert await push.notify(
        services, kind="ticket_taken", openid=OPENID, ref="ticket:42", values=taken
    )
    assert not await call(services)


async def test_unfollowed_citizen_gets_no_notice(services: Services, standin: StandIn) -> None:
    await Citizen.follow(OPENID, services.now())
    await Citizen.unfollow(OPENID, services.now())

    assert await call(services) is False

    notice = await notice_of("ticket:42")
    assert (notice.status, notice.last_error, notice.data) == ("skipped", "not following", {})
    await asyncio.sleep(0.3)
    assert templates_to(standin) == []
    assert await call(services) is False  # still claimed: a later follow does not resend it


async def test_busy_platform_is_retried_then_sent(services: Services, standin: StandIn) -> None:
    standin.fail_next("template", -1, times=2)

    await call(services)
    notice = await settled((await notice_of("ticket:42")).id)

    assert (notice.status, notice.attempts) == ("sent", 3)
    assert [r.errcode for r in standin.records if r.kind == "template"] == [-1, -1, 0]


async def test_busy_platform_past_the_limit_fails_the_notice(
    services: Services, standin: StandIn, book: NoticeBook
) -> None:
    standin.fail_next("template", -1, times=10)

    await call(services)
    notice = await settled((await notice_of("ticket:42")).id)

    assert notice.status == "failed"
    assert notice.attempts == book.delivery.max_attempts
    assert notice.last_error == "errcode=-1"
    assert len(templates_to(standin)) == book.delivery.max_attempts


async def test_not_follower_is_blocked_and_unfollowed_without_retry(
    services: Services, standin: StandIn
) -> None:
    await Citizen.follow(OPENID, services.now())
    standin.unfollowed.add(OPENID)

    await call(services)
    notice = await settled((await notice_of("ticket:42")).id)

    assert (notice.status, notice.attempts, notice.last_error) == ("blocked", 1, "errcode=43004")
    assert not (await Citizen.get(openid=OPENID)).is_following
    await asyncio.sleep(0.3)
    assert len(templates_to(standin)) == 1
    assert await call(services, ref="ticket:43") is False  # the next notice is not even tried


async def test_unknown_citizen_who_is_no_follower_is_recorded(
    services: Services, standin: StandIn
) -> None:
    standin.fail_next("template", 43004)

    await call(services)
    await settled((await notice_of("ticket:42")).id)

    assert not (await Citizen.get(openid=OPENID)).is_following


@pytest.mark.parametrize("errcode", [40037, 47003])
async def test_config_error_fails_without_retry(
    services: Services, standin: StandIn, errcode: int, caplog: pytest.LogCaptureFixture
) -> None:
    standin.fail_next("template", errcode)

    await call(services)
    notice = await settled((await notice_of("ticket:42")).id)

    assert (notice.status, notice.attempts) == ("failed", 1)
    assert notice.last_error == f"errcode={errcode}"
    assert f"errcode={errcode}" in caplog.text
    assert len(templates_to(standin)) == 1


async def test_timeout_is_retried_and_the_citizen_gets_one_message(
    services: Services, standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(push, "SEND_TIMEOUT_S", 0.3)
    standin.delay_next("template", 0.8)

    await call(services)
    notice = await settled((await notice_of("ticket:42")).id)

    assert (notice.status, notice.attempts) == ("sent", 2)
    await asyncio.sleep(0.8)  # the late first call lands too, with the same client_msg_id
    assert len(templates_to(standin)) == 2
    assert len(standin.sent("template")) == 1


async def test_broken_gateway_is_retried(services: Services, standin: StandIn) -> None:
    standin.break_next("template", 502)

    await call(services)
    notice = await settled((await notice_of("ticket:42")).id)

    assert (notice.status, notice.attempts) == ("sent", 2)


async def test_one_citizens_failure_does_not_hold_up_another(
    services: Services, standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(push, "SEND_TIMEOUT_S", 2.0)
    standin.delay_next("template", 1.5)  # the first send hangs
    other = "oPUSH00000000000000000000002"

    await call(services, ref="ticket:1")
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await call(services, ref="ticket:2", openid=other)
    second = await settled((await notice_of("ticket:2")).id)

    assert second.status == "sent"
    assert time.monotonic() - started < 1.0


async def test_job_for_a_notice_not_pending_does_nothing(
    services: Services, standin: StandIn
) -> None:
    await call(services)
    notice = await settled((await notice_of("ticket:42")).id)

    assert await push.send_notice({"services": services}, notice.id) == ""
    assert len(templates_to(standin)) == 1


async def test_fresh_claim_is_left_and_stale_claim_is_taken_over(
    services: Services, standin: StandIn
) -> None:
    notice = await Notice.create(
        kind="ticket_called",
        ref="ticket:7",
        openid=OPENID,
        status="sending",
        template_id="tmpl_ticket_called_0001",
        client_msg_id="ticket_called:ticket:7",
        data={"channel": "template", "fields": {"thing2": "2号窗口"}, "link": ""},
        attempts=1,
        claimed_at=services.now(),
    )
    ctx = {"services": services}

    assert await push.send_notice(ctx, notice.id) == ""  # another worker is sending it

    stale = services.now() - timedelta(seconds=push.STALE_CLAIM_S + 1)
    await Notice.filter(id=notice.id).update(claimed_at=stale)
    assert await push.send_notice(ctx, notice.id) == "sent"
    assert (await Notice.get(id=notice.id)).attempts == 2


async def test_worker_stopped_mid_send_hands_the_notice_back(
    services: Services, standin: StandIn
) -> None:
    notice = await Notice.create(
        kind="ticket_called",
        ref="ticket:8",
        openid=OPENID,
        template_id="tmpl_ticket_called_0001",
        client_msg_id="ticket_called:ticket:8",
        data={"channel": "template", "fields": {"thing2": "2号窗口"}, "link": ""},
    )
    standin.delay_next("template", 1.0)
    job = asyncio.ensure_future(push.send_notice({"services": services}, notice.id))
    await asyncio.sleep(0.3)

    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job

    back = await Notice.get(id=notice.id)
    assert (back.status, back.claimed_at, back.last_error) == ("pending", None, "cancelled")


async def test_notice_too_old_to_send_is_dropped(services: Services, standin: StandIn) -> None:
    notice = await Notice.create(
        kind="ticket_called",
        ref="ticket:9",
        openid=OPENID,
        template_id="tmpl_ticket_called_0001",
        client_msg_id="ticket_called:ticket:9",
        data={"channel": "template", "fields": {"thing2": "2号窗口"}, "link": ""},
    )
    await Notice.filter(id=notice.id).update(created_at=services.now() - timedelta(hours=2))

    assert await push.send_notice({"services": services}, notice.id) == "failed"
    assert (await Notice.get(id=notice.id)).last_error == "too old to send"
    assert templates_to(standin) == []


async def test_notice_queued_while_redis_was_down_is_sent_by_the_sweep(
    services: Services, standin: StandIn
) -> None:
    working = services.jobs
    services.jobs = ArqRedis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    try:
        assert await call(services) is True  # claimed: the sweep will queue it
    finally:
        await services.jobs.aclose()
        services.jobs = working
    notice = await notice_of("ticket:42")
    assert notice.status == "pending"
    await Notice.filter(id=notice.id).update(created_at=services.now() - timedelta(minutes=1))

    assert await push.requeue_stalled({"services": services}) == 1

    assert (await settled(notice.id)).status == "sent"
    assert await push.requeue_stalled({"services": services}) == 0


async def test_sweep_leaves_a_notice_whose_job_is_waiting(services: Services) -> None:
    notice = await Notice.create(
        kind="ticket_called",
        ref="ticket:10",
        openid=OPENID,
        template_id="tmpl_ticket_called_0001",
        client_msg_id="ticket_called:ticket:10",
        data={"channel": "template", "fields": {}, "link": ""},
    )
    await Notice.filter(id=notice.id).update(created_at=services.now() - timedelta(minutes=1))
    assert await push.enqueue(services, notice.id, defer_s=60)  # a retry waiting its turn

    assert await push.requeue_stalled({"services": services}) == 0


async def test_notify_refuses_unknown_kind_and_missing_values(services: Services) -> None:
    with pytest.raises(ValueError, match="unknown notice kind"):
        await push.notify(services, kind="ticket_lost", openid=OPENID, ref="t:1", values={})
    with pytest.raises(ValueError, match="called_at"):
        values = {k: v for k, v in CALLED.items() if k != "called_at"}
        await push.notify(services, kind="ticket_called", openid=OPENID, ref="t:1", values=values)
    assert await Notice.all().count() == 0


async def test_notify_many_queues_each_once(services: Services, standin: StandIn) -> None:
    items = [
        push.NoticeRequest("ticket_called", f"oPUSH{i:023d}", f"ticket:{i}", CALLED)
        for i in range(5)
    ]

    assert await push.notify_many(services, items + items[:2]) == 5

    for notice in await Notice.all():
        assert (await settled(notice.id)).status == "sent"
    assert len(standin.sent("template")) == 5


async def test_subscription_notice_needs_consent(
    services: Services, standin: StandIn, monkeypatch: pytest.MonkeyPatch, book: NoticeBook
) -> None:
    kinds = dict(book.kinds)
    kinds["ticket_called"] = replace(kinds["ticket_called"], channel="subscribe")
    monkeypatch.setattr(notices, "notice_book", lambda: replace(book, kinds=kinds))

    assert await call(services, ref="ticket:1") is False
    assert (await notice_of("ticket:1")).last_error == "no consent"

    await push.record_consent(OPENID, [("tmpl_ticket_called_0001", True)])
    assert await call(services, ref="ticket:2") is True
    assert (await settled((await notice_of("ticket:2")).id)).status == "sent"
    assert len(standin.sent("subscribe")) == 1

    standin.fail_next("subscribe", 43101)
    await call(services, ref="ticket:3")
    assert (await settled((await notice_of("ticket:3")).id)).status == "blocked"
    consent = await NoticeConsent.get(openid=OPENID, template_id="tmpl_ticket_called_0001")
    assert (consent.is_accepted, consent.source) == (False, "sent")


async def test_receipt_before_the_msgid_is_stored_is_applied(
    services: Services, standin: StandIn
) -> None:
    standin.delay_next("template", 0.2)
    await call(services)
    await asyncio.sleep(0.1)  # the send is under way; its msgid is the stand-in's next one
    msgid = str(2_000_000_001)

    assert await push.record_receipt(services, OPENID, msgid, "success") == ""

    notice = await settled((await notice_of("ticket:42")).id)
    assert notice.msgid == msgid
    for _ in range(50):
        notice = await Notice.get(id=notice.id)
        if notice.status == "delivered":
            break
        await asyncio.sleep(0.02)
    assert (notice.status, notice.delivered_at is not None) == ("delivered", True)


# The notices file and the values that go into the fields.


def test_book_has_every_kind_the_services_send() -> None:
    book = load_notice_book()

    assert set(book.kinds) >= SERVICE_KINDS
    for kind in book.kinds.values():
        assert kind.template_id and kind.fields, kind.name


def test_fixed_wording_of_every_kind_is_shown_whole() -> None:
    """A sentence from templates/ that the platform would cut reads badly: each fits."""
    texts = Texts()
    for kind in load_notice_book().kinds.values():
        for name, source in kind.fields.items():
            if source.endswith(".j2"):
                shown = texts.render(source, "zh", **dict.fromkeys(kind.needs, "x"))
                assert 0 < len(shown) <= kind.max_chars, (kind.name, name, shown)


def test_book_refuses_a_kind_without_template_id() -> None:
    with pytest.raises(NoticeBookError, match=r"ticket_called.*template_id"):
        parse_notice_book({"kinds": {"ticket_called": {"fields": {"thing1": "{x}"}}}})


def test_book_refuses_placeholders_that_are_not_plain_names() -> None:
    data = {"kinds": {"k": {"template_id": "t", "fields": {"thing1": "{x.y}"}}}}
    with pytest.raises(NoticeBookError, match="plain names"):
        parse_notice_book(data)


def test_render_fills_fields_link_and_cuts_long_values() -> None:
    book = parse_notice_book(
        {
            "kinds": {
                "k": {
                    "template_id": "t",
                    "url": "https://example.org/t/{number}",
                    "fields": {"thing1": "{hall}", "character_string2": "{number}"},
                }
            }
        }
    )
    hall = "东莞市松山湖市民服务中心 南区分厅 二楼东侧"
    data = book.kind("k").render({"hall": hall, "number": "A5"})

    assert data == {
        "channel": "template",
        "fields": {"thing1": "东莞市松山湖市民服务中心 南区分厅…", "character_string2": "A5"},
        "link": "https://example.org/t/A5",
    }


def test_short_value_is_kept_whole() -> None:
    assert fit("松山湖市民服务中心2号窗口") == "松山湖市民服务中心2号窗口"
    assert fit("x" * 20) == "x" * 20


def test_long_value_is_cut_before_a_separator() -> None:
    assert fit("营业执照变更登记办理进度查询，需携带身份证原件") == "营业执照变更登记办理进度查询…"
    assert fit("东莞市松山湖市民服务中心、南区分厅与社区服务中心") == "东莞市松山湖市民服务中心…"


def test_cut_never_splits_a_latin_word() -> None:
    assert fit("Songshan Lake Civic Service Center") == "Songshan Lake Civic…"


def test_cut_keeps_a_closing_bracket_with_its_text() -> None:
    assert fit("居民社保卡补办手续（加急）以及其他相关材料") == "居民社保卡补办手续（加急）…"


def test_text_without_separator_is_cut_at_the_limit() -> None:
    digits = "一二三四五六七八九十" * 2
    assert fit(digits + "一") == digits[:19] + "…"


def test_emoji_and_line_breaks_are_removed() -> None:
    assert fit("请到\n2号窗口 😀 办理") == "请到 2号窗口 办理"


def test_cut_value_always_fits_what_the_platform_shows() -> None:
    rng = random.Random(7)
    alphabet = "松山湖市民服务中心ab c，、（）()-/:;" + "号窗口"
    for _ in range(2000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        limit = rng.randint(5, 20)
        shown = fit(value, limit)
        assert len(shown) <= limit, (value, shown)
        clean = " ".join(value.split())
        if len(clean) <= limit:
            assert shown == clean
        else:
            assert shown.endswith("…") and clean.startswith(shown[:-1]), (value, shown)


def test_long_client_msg_id_keeps_within_the_column() -> None:
    key = push.client_msg_id("application_progress", "application:" + "4" * 60)

    assert len(key) <= push.CLIENT_MSG_ID_MAX_CHARS
    assert key.startswith("application_progress:")
    assert key != push.client_msg_id("application_progress", "application:" + "4" * 59)


async def test_job_that_runs_before_its_row_is_committed_looks_again(
    services: Services, standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller's transaction commits the row after the job started: the job still sends it."""
    monkeypatch.setattr(push, "UNSEEN_WAIT_S", 0.1)
    row = {
        "kind": "ticket_called",
        "ref": "ticket:11",
        "openid": OPENID,
        "template_id": "tmpl_ticket_called_0001",
        "client_msg_id": "ticket_called:ticket:11",
        "data": {"channel": "template", "fields": {"thing2": "2号窗口"}, "link": ""},
    }
    notice_id = (await Notice.create(**row)).id
    await Notice.filter(id=notice_id).delete()  # as good as not committed yet
    assert await push.enqueue(services, notice_id)
    await asyncio.sleep(0.15)  # the job ran and found no row

    await Notice.create(id=notice_id, **row)

    assert (await settled(notice_id, wait_s=2.0)).status == "sent"


async def soon(services: Services, ref: str = "ticket:42") -> bool:
    return await push.notify_soon(
        services, kind="ticket_called", openid=OPENID, ref=ref, values=CALLED
    )


async def test_notify_soon_claims_and_sends_in_one_job(
    services: Services, standin: StandIn
) -> None:
    """The request path only queues; the job claims the row and sends, once however queued."""
    results = await asyncio.gather(*(soon(services) for _ in range(8)))

    assert all(results)
    notice = await settled((await claimed_notice(services, "ticket:42", "ticket_called")).id)
    assert (notice.status, notice.attempts) == ("sent", 1)
    await asyncio.sleep(0.3)  # a second claim job, had one run, would have sent by now
    assert len(templates_to(standin)) == 1
    assert await Notice.filter(ref="ticket:42").count() == 1


async def test_notify_soon_refuses_missing_values_where_it_is_called(services: Services) -> None:
    values = {k: v for k, v in CALLED.items() if k != "window"}
    with pytest.raises(ValueError, match="window"):
        await push.notify_soon(
            services, kind="ticket_called", openid=OPENID, ref="t:1", values=values
        )


async def test_notify_soon_without_redis_claims_here_for_the_sweep(
    services: Services, standin: StandIn
) -> None:
    working, batch = services.jobs, services.batch
    services.jobs = ArqRedis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    services.batch = RedisBatch(services.jobs)
    try:
        assert await soon(services) is True
    finally:
        await services.jobs.aclose()
        services.jobs, services.batch = working, batch

    notice = await notice_of("ticket:42")
    assert notice.status == "pending"  # claimed: requeue_stalled sends it once Redis is back


async def test_claim_job_whose_send_is_busy_leaves_a_retry(
    services: Services, standin: StandIn
) -> None:
    standin.fail_next("template", -1)

    await soon(services)
    notice = await settled((await claimed_notice(services, "ticket:42", "ticket_called")).id)

    assert (notice.status, notice.attempts) == ("sent", 2)


async def test_worker_process_lowers_its_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot import worker

    niced: list[int] = []

    class Opened(Exception):
        pass

    async def stop_here(settings: object) -> None:
        raise Opened

    monkeypatch.setattr(worker.os, "nice", lambda n: niced.append(n) or n)
    monkeypatch.setattr(worker, "open_services", stop_here)
    for nice in (7, 0):
        with pytest.raises(Opened):
            await worker.run(replace(make_settings(), worker_nice=nice))
    assert niced == [7]  # 0 leaves the priority as it is


async def test_a_database_failure_in_the_claim_job_is_retried_not_lost(
    services: Services, standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until the claim job has written the row, the job is all there is of the notice."""
    from tortoise.exceptions import DBConnectionError

    real = Citizen.get_or_none
    failures = [DBConnectionError("connection was closed in the middle of operation")]

    def flaky(*args: object, **kwargs: object) -> object:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(push, "CLAIM_RETRY_S", 0.05)
    monkeypatch.setattr(Citizen, "get_or_none", flaky)

    assert await soon(services)
    notice = await settled((await claimed_notice(services, "ticket:42", "ticket_called")).id)

    assert notice.status == "sent" and not failures
    assert len(templates_to(standin)) == 1


async def test_a_claim_job_that_waited_past_the_notice_age_sends_no_stale_news(
    services: Services, standin: StandIn
) -> None:
    """Workers down for 20 minutes: "called to window 2" is no news to send that late."""
    queued_at = (services.now() - timedelta(minutes=20)).isoformat()

    status = await push.claim_and_send(
        {"services": services}, "ticket_called", OPENID, "ticket:42", CALLED, queued_at
    )

    notice = await notice_of("ticket:42")
    assert (status, notice.status, notice.last_error) == ("failed", "failed", "too old to send")
    assert templates_to(standin) == []


async def test_job_start_log_line_keeps_no_openid(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """arq logged each job's arguments, the citizen's openid and the notice's values with them."""
    import logging

    caplog.set_level(logging.INFO)

    assert await soon(services)
    await claimed_notice(services, "ticket:42", "ticket_called")
    await asyncio.sleep(0.2)  # the job's start and end lines

    started = [r.getMessage() for r in caplog.records if "→ notice:claim:" in r.getMessage()]
    assert started and all(line.endswith("claim_and_send_notice(…)") for line in started)
    assert OPENID not in caplog.text and CALLED["number"] not in caplog.text


async def test_a_claim_rerun_after_a_stop_mid_send_sends_at_once(
    services: Services, standin: StandIn
) -> None:
    """A worker stopped mid-send hands the notice back; arq's rerun of the claim job found the
    row and returned, and the notice waited for the stalled sweep."""
    notice = await push.claim(
        services, kind="ticket_called", openid=OPENID, ref="ticket:77", values=CALLED,
        to_send=True,
    )  # fmt: skip
    assert notice is not None
    await push._release(notice, "cancelled")  # what the stopping worker did

    rerun = {"services": services, "job_try": 2}
    assert await push.claim_and_send(rerun, "ticket_called", OPENID, "ticket:77", CALLED) == ""

    assert (await settled(notice.id, wait_s=3.0)).status == "sent"
    assert len(templates_to(standin)) == 1


def test_the_missed_notice_names_the_words_the_chat_takes_to_requeue() -> None:
    """The notice said 点菜单“排队进度”可重排一次 where the chat asks for 回复“重排A002”."""
    texts = Texts()
    for language in ("zh", "en"):
        shown = texts.render("notices/ticket_missed_next.j2", language, number="A002")
        assert "重排A002" in shown and len(shown) <= 20, shown
