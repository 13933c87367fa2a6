"""Applications: status history from the approval system, notices once per change, and post."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.services import Services
from models import application as applications
from models.application import (
    Application,
    ApplicationEvent,
    ApplicationNotFound,
    MailAlreadyAsked,
    MailRequest,
    NotMailable,
    TooManyLookups,
)
from models.notice import Notice

BEIJING = ZoneInfo("Asia/Shanghai")
NUMBER = "SL2026030200012"
OPENID = "o-applicant"


def row(status: str, hour: int, **extra: Any) -> dict[str, Any]:
    """A row as the approval system exports it, at 2 March 2026 `hour`:00 in the hall."""
    return {
        "application_no": NUMBER,
        "item_name": "食品经营许可证核发",
        "unit": "市场监督管理局",
        "phone": "138 0013 8000",
        "status": status,
        "at": f"2026-03-02T{hour:02d}:00:00",
        **extra,
    }


async def imported(services: Services, *rows: dict[str, Any]) -> Application:
    result = await applications.apply_updates(services, list(rows), "import", is_history=True)
    assert result.errors == []
    return await Application.get(application_no=NUMBER)


async def statuses(application: Application) -> list[str]:
    return [e.status for e in await applications.history(application)]


def test_mainland_mobile_numbers_are_read_in_their_usual_spellings() -> None:
    assert applications.normalize_mobile("13800138000") == "13800138000"
    assert applications.normalize_mobile("138 0013 8000") == "13800138000"
    assert applications.normalize_mobile("+86 138-0013-8000") == "13800138000"
    assert applications.normalize_mobile("12800138000") is None
    assert applications.normalize_mobile("1380013800") is None
    assert applications.normalize_mobile("0769-22000000") is None


def test_an_address_must_look_like_one() -> None:
    address = "广东省东莞市松山湖园区新城路1号2栋301室"

    assert applications.clean_address(f"  {address}\n") == address
    assert applications.clean_address("我家") is None
    assert applications.clean_address("abcdefghijklmn") is None
    assert applications.clean_address("东莞市" + "很长" * 70) is None
    assert applications.clean_address("东莞市 <a href=x>点我</a> 1号") is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"application_no": "12"}, "application_no"),
        ({"status": "done"}, "status must be one of"),
        ({"at": "yesterday"}, "not an ISO 8601 time"),
        ({"phone": "12"}, "four digits"),
        ({"at": ""}, "at is missing"),
    ],
)
def test_a_bad_row_is_refused_with_its_reason(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        applications.parse_update({**row("received", 9), **change}, BEIJING, None)


def test_only_the_phones_last_four_digits_are_kept() -> None:
    update = applications.parse_update(row("received", 9), BEIJING, None)

    assert update.phone_tail == "8000"
    assert update.at == datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


async def test_history_is_kept_in_order_and_the_latest_is_current(services: Services) -> None:
    application = await imported(
        services, row("received", 9), row("reviewing", 10), row("ready", 15)
    )

    assert await statuses(application) == ["received", "reviewing", "ready"]
    assert (application.status, application.seq) == ("ready", 3)
    assert application.phone_tail == "8000"


async def test_the_same_file_imported_twice_changes_nothing(services: Services) -> None:
    rows = [row("received", 9), row("reviewing", 10)]
    await imported(services, *rows)

    again = await applications.apply_updates(services, rows, "import", is_history=True)

    assert (again.created, again.changed, again.unchanged) == (0, 0, 2)
    assert await ApplicationEvent.all().count() == 2


async def test_an_older_status_joins_the_history_without_replacing_the_current(
    services: Services,
) -> None:
    application = await imported(services, row("received", 9), row("approved", 14))

    await imported(services, row("reviewing", 11))
    await application.refresh_from_db()

    assert await statuses(application) == ["received", "reviewing", "approved"]
    assert application.status == "approved"


async def test_a_repeated_status_is_no_change(services: Services) -> None:
    application = await imported(services, row("received", 9))

    event = await applications.record_status(
        services, application, "received", datetime(2026, 3, 2, 5, tzinfo=UTC)
    )

    assert event is None
    assert await statuses(application) == ["received"]


async def test_updates_at_once_each_get_their_own_place_in_the_history(
    services: Services,
) -> None:
    application = await imported(services, row("received", 9))
    copies = [await Application.get(id=application.id) for _ in range(4)]
    at = datetime(2026, 3, 2, 3, tzinfo=UTC)

    await asyncio.gather(
        *(
            applications.record_status(services, copy, status, at + timedelta(minutes=i))
            for i, (copy, status) in enumerate(
                zip(copies, ("reviewing", "supplement", "approved", "ready"), strict=True)
            )
        )
    )

    seqs = sorted(
        await ApplicationEvent.filter(application_id=application.id).values_list("seq", flat=True)
    )
    assert seqs == [1, 2, 3, 4, 5]


async def test_each_change_is_announced_once_to_the_citizen_following(
    services: Services,
) -> None:
    application = await imported(services, row("received", 9))
    await applications.find_for_citizen(services, NUMBER, "8000", OPENID)

    await imported(services, row("reviewing", 10), row("reviewing", 10), row("ready", 15))

    notices = await Notice.filter(kind="application_progress").order_by("id")
    assert [n.ref for n in notices] == [
        f"application:{application.id}:2",
        f"application:{application.id}:3",
    ]
    assert {n.openid for n in notices} == {OPENID}
    assert notices[-1].data["fields"]["phrase3"] == "可领取"
    assert notices[-1].data["fields"]["time4"] == "2026-03-02 15:00"


async def test_nobody_is_told_of_an_application_nobody_looked_up(services: Services) -> None:
    await imported(services, row("received", 9), row("ready", 15))

    assert await Notice.filter(kind="application_progress").count() == 0


async def test_look_up_needs_the_right_number_and_phone_and_stops_guessers(
    services: Services,
) -> None:
    await imported(services, row("received", 9))

    with pytest.raises(ApplicationNotFound):
        await applications.find_for_citizen(services, NUMBER, "0000", OPENID)
    with pytest.raises(ApplicationNotFound):
        await applications.find_for_citizen(services, "SL2026030299999", "8000", OPENID)
    for _ in range(3):
        with pytest.raises(ApplicationNotFound):
            await applications.find_for_citizen(services, NUMBER, "1111", OPENID)

    with pytest.raises(TooManyLookups):
        await applications.find_for_citizen(services, NUMBER, "8000", OPENID)
    found = await applications.find_for_citizen(services, NUMBER.lower(), "8000", "o-other")
    assert found.openid == "o-other"


async def _ready_and_followed(services: Services) -> Application:
    await imported(services, row("received", 9), row("ready", 15))
    return await applications.find_for_citizen(services, NUMBER, "8000", OPENID)


async def test_a_certificate_is_posted_once_and_the_tracking_number_pushed_once(
    services: Services,
) -> None:
    application = await _ready_and_followed(services)
    request = await applications.request_mail(
        application, OPENID, "东莞市松山湖园区新城路1号", "13800138000", services.now()
    )

    with pytest.raises(MailAlreadyAsked):
        await applications.request_mail(
            application, OPENID, "东莞市松山湖园区新城路2号", "13800138000", services.now()
        )
    first = await applications.enter_tracking(services, request, "EMS", "1100000000001", "api")
    again = await applications.enter_tracking(services, request, "EMS", "1100000000001", "api")

    assert (first, again) == (True, False)
    mailed = await Notice.filter(kind="certificate_mailed")
    assert [n.ref for n in mailed] == [f"mail:{request.id}:1100000000001"]
    assert mailed[0].data["fields"]["character_string3"] == "1100000000001"
    await application.refresh_from_db()
    assert application.status == "mailed"
    # The mailed notice says it all: no progress notice for the same news.
    assert await Notice.filter(kind="application_progress", ref__contains=":3").count() == 0


async def test_a_corrected_tracking_number_is_pushed_again(services: Services) -> None:
    application = await _ready_and_followed(services)
    request = await applications.request_mail(
        application, OPENID, "东莞市松山湖园区新城路1号", "13800138000", services.now()
    )
    await applications.enter_tracking(services, request, "EMS", "1100000000001", "api")

    await applications.enter_tracking(services, request, "EMS", "1100000000002", "api")

    assert await Notice.filter(kind="certificate_mailed").count() == 2
    assert await ApplicationEvent.filter(status="mailed").count() == 1


async def test_only_a_ready_certificate_of_ones_own_may_be_posted(services: Services) -> None:
    application = await imported(services, row("received", 9))
    await applications.find_for_citizen(services, NUMBER, "8000", OPENID)

    with pytest.raises(NotMailable):
        await applications.request_mail(
            application, OPENID, "东莞市松山湖园区新城路1号", "13800138000", services.now()
        )
    await imported(services, row("ready", 15))
    with pytest.raises(NotMailable):
        await applications.request_mail(
            application, "o-stranger", "东莞市松山湖园区新城路1号", "13800138000", services.now()
        )


async def test_unfollowing_erases_addresses_and_phones(services: Services) -> None:
    application = await _ready_and_followed(services)
    await applications.request_mail(
        application, OPENID, "东莞市松山湖园区新城路1号", "13800138000", services.now()
    )

    erased = await applications.forget_citizen(OPENID, services.now())

    request = await MailRequest.get(application_id=application.id)
    assert erased == 1
    assert (request.address, request.phone, request.status) == ("", "", "withdrawn")
    assert request.active_key is None
    assert (await Application.get(id=application.id)).openid is None


async def test_old_mail_data_is_erased_after_the_keeping_time(services: Services) -> None:
    application = await _ready_and_followed(services)
    request = await applications.request_mail(
        application, OPENID, "东莞市松山湖园区新城路1号", "13800138000", services.now()
    )
    await applications.enter_tracking(services, request, "EMS", "1100000000001", "api")
    later = services.now() + timedelta(days=applications.MAIL_DATA_KEEP_DAYS + 1)

    assert await applications.erase_old_mail_data(services.now()) == 0
    assert await applications.erase_old_mail_data(later) == 1

    request = await MailRequest.get(id=request.id)
    assert (request.address, request.phone, request.tracking_no) == ("", "", "1100000000001")


async def test_the_worker_erases_old_mail_data_each_night(services: Services) -> None:
    from bot.worker import CRON_JOBS

    job = next(j for j in CRON_JOBS if j.name == "purge_mail_data")
    application = await _ready_and_followed(services)
    request = await applications.request_mail(
        application, OPENID, "东莞市松山湖园区新城路1号", "13800138000", services.now()
    )
    await applications.enter_tracking(services, request, "EMS", "1100000000001", "api")
    await MailRequest.filter(id=request.id).update(
        mailed_at=services.now() - timedelta(days=applications.MAIL_DATA_KEEP_DAYS + 1)
    )

    erased = await job.coroutine({"services": services})

    assert (job.hour, job.minute) == ({3}, {20})
    assert erased == 1
    assert (await MailRequest.get(id=request.id)).address == ""
