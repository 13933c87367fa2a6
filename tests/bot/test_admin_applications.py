"""The applications API and import command: who may call, status updates, tracking numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot import cli
from bot.admin_applications import read_rows
from bot.services import Services
from models import application as applications
from models.application import Application, ApplicationEvent, MailRequest
from models.notice import Notice
from tests.models.test_application import NUMBER, OPENID, imported, row

ADMIN = {"Authorization": "Bearer tok-admin"}
WINDOW = {"Authorization": "Bearer tok-w1"}


async def call(
    client: TestClient, method: str, path: str, headers: dict[str, str], body: Any = None
) -> tuple[int, Any]:
    response = await client.request(method, f"/api/staff{path}", headers=headers, json=body)
    return response.status, await response.json()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/applications"),
        ("POST", f"/admin/applications/{NUMBER}/status"),
        ("GET", f"/applications/{NUMBER}"),
        ("GET", "/mail-requests"),
        ("POST", "/mail-requests/1/tracking"),
    ],
)
async def test_every_route_needs_a_token(app_client: TestClient, method: str, path: str) -> None:
    status, body = await call(app_client, method, path, {"Authorization": "Bearer nope"}, {})

    assert (status, body) == (401, {"error": "unauthorized"})


async def test_status_updates_are_for_administrators_not_windows(
    app_client: TestClient,
) -> None:
    status, body = await call(
        app_client, "POST", "/admin/applications", WINDOW, row("received", 9)
    )

    assert (status, body) == (403, {"error": "admins_only"})
    assert await Application.all().count() == 0


async def test_approval_system_posts_new_applications_and_changes(
    app_client: TestClient,
) -> None:
    status, body = await call(
        app_client,
        "POST",
        "/admin/applications",
        ADMIN,
        {"applications": [row("received", 9), row("reviewing", 10), {"status": "x"}]},
    )

    assert status == 200
    assert body["created"] == 1 and body["changed"] == 1
    assert body["errors"] == ["row 3: application_no must be up to 4 letters and 8-24 digits"]
    event = await ApplicationEvent.get(seq=2)
    assert event.source == "api:admin"


async def test_a_status_update_is_recorded_once_and_pushed_once(
    app_client: TestClient, services: Services
) -> None:
    application = await imported(services, row("received", 9))
    await applications.find_for_citizen(services, NUMBER, "8000", OPENID)
    update = {"status": "ready", "at": "2026-03-02T15:00:00+08:00", "note": "请到3号窗口领证"}

    first = await call(app_client, "POST", f"/admin/applications/{NUMBER}/status", ADMIN, update)
    again = await call(app_client, "POST", f"/admin/applications/{NUMBER}/status", ADMIN, update)

    assert first[0] == again[0] == 200
    assert (first[1]["changed"], again[1]["changed"]) == (True, False)
    assert first[1]["status"] == "ready"
    assert [e["status"] for e in first[1]["events"]] == ["received", "ready"]
    assert first[1]["events"][1]["at"] == "2026-03-02T07:00:00+00:00"
    notices = await Notice.filter(kind="application_progress")
    assert [n.ref for n in notices] == [f"application:{application.id}:2"]


async def test_a_status_update_without_a_time_happens_now(
    app_client: TestClient, services: Services
) -> None:
    await imported(services, row("received", 9))

    status, body = await call(
        app_client, "POST", f"/admin/applications/{NUMBER}/status", ADMIN, {"status": "approved"}
    )

    assert status == 200 and body["status"] == "approved"


@pytest.mark.parametrize(
    ("body", "detail"),
    [({"status": "done"}, "status must be one of"), ([1], "body must be a JSON object")],
)
async def test_a_bad_status_update_is_refused(
    app_client: TestClient, services: Services, body: Any, detail: str
) -> None:
    await imported(services, row("received", 9))

    status, answer = await call(
        app_client, "POST", f"/admin/applications/{NUMBER}/status", ADMIN, body
    )

    assert status == 400 and detail in answer["detail"]


async def test_an_unknown_application_is_not_found(app_client: TestClient) -> None:
    status, body = await call(app_client, "GET", "/applications/SL2026030299999", WINDOW)

    assert (status, body) == (404, {"error": "application_not_found"})


async def test_staff_list_the_requests_to_post_and_enter_tracking_numbers(
    app_client: TestClient, services: Services
) -> None:
    application = await imported(services, row("received", 9), row("ready", 15))
    await applications.find_for_citizen(services, NUMBER, "8000", OPENID)
    request = await applications.request_mail(
        application, OPENID, "东莞市松山湖园区新城路1号", "13800138000", services.now()
    )

    status, listing = await call(app_client, "GET", "/mail-requests", WINDOW)
    path = f"/mail-requests/{request.id}/tracking"
    posted = await call(
        app_client, "POST", path, WINDOW, {"carrier": "EMS", "tracking_no": "1100000000001"}
    )
    mailed = await call(app_client, "GET", "/mail-requests?status=mailed", WINDOW)

    assert status == 200
    assert [(m["application_no"], m["address"], m["phone"]) for m in listing["mail_requests"]] == [
        (NUMBER, "东莞市松山湖园区新城路1号", "13800138000")
    ]
    assert posted[0] == 200 and posted[1]["status"] == "mailed"
    assert [m["tracking_no"] for m in mailed[1]["mail_requests"]] == ["1100000000001"]
    assert await Notice.filter(kind="certificate_mailed").count() == 1


@pytest.mark.parametrize(
    "body",
    [{"carrier": "", "tracking_no": "1"}, {"carrier": "EMS", "tracking_no": "11 00"}, {}],
)
async def test_a_bad_tracking_entry_is_refused(
    app_client: TestClient, services: Services, body: dict[str, str]
) -> None:
    application = await imported(services, row("received", 9), row("ready", 15))
    await applications.find_for_citizen(services, NUMBER, "8000", OPENID)
    request = await applications.request_mail(
        application, OPENID, "东莞市松山湖园区新城路1号", "13800138000", services.now()
    )

    status, _ = await call(
        app_client, "POST", f"/mail-requests/{request.id}/tracking", ADMIN, body
    )

    assert status == 400
    assert (await MailRequest.get(id=request.id)).status == "requested"


async def test_a_withdrawn_request_takes_no_tracking_number(
    app_client: TestClient, services: Services
) -> None:
    application = await imported(services, row("received", 9), row("ready", 15))
    await applications.find_for_citizen(services, NUMBER, "8000", OPENID)
    request = await applications.request_mail(
        application, OPENID, "东莞市松山湖园区新城路1号", "13800138000", services.now()
    )
    await applications.forget_citizen(OPENID, services.now())

    status, body = await call(
        app_client,
        "POST",
        f"/mail-requests/{request.id}/tracking",
        ADMIN,
        {"carrier": "EMS", "tracking_no": "1100000000001"},
    )

    assert (status, body) == (409, {"error": "mail_request_withdrawn"})


def test_csv_and_json_exports_read_as_the_same_rows(tmp_path: Path) -> None:
    csv_file = tmp_path / "export.csv"
    csv_file.write_text(
        "\ufeffapplication_no,item_name,phone,status,at\n"
        f"{NUMBER},食品经营许可证核发,13800138000,received,2026-03-02T09:00:00\n",
        encoding="utf-8",
    )
    json_file = tmp_path / "export.json"
    json_file.write_text(json.dumps({"applications": [read_rows(csv_file)[0]]}), encoding="utf-8")

    assert read_rows(csv_file) == read_rows(json_file)
    assert read_rows(csv_file)[0]["application_no"] == NUMBER


async def _run_cli(argv: list[str], database_url: str) -> int:
    import asyncio

    env = {"WECHAT_TOKEN": "testtoken", "WECHAT_APPID": "wx1", "WECHAT_APPSECRET": "s"}
    env.update(WECHAT_MODE="plain", DATABASE_URL=database_url)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.delenv("REDIS_URL", raising=False)
        return await asyncio.to_thread(cli.main, argv)


async def test_import_command_loads_a_file_and_again_changes_nothing(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from models.db import close_db, init_db

    path = tmp_path / "export.csv"
    path.write_text(
        "application_no,item_name,unit,phone,status,at,note\n"
        f"{NUMBER},食品经营许可证核发,市场监督管理局,13800138000,received,2026-03-02T09:00,\n"
        f"{NUMBER},食品经营许可证核发,市场监督管理局,13800138000,ready,2026-03-02T15:00,可领证\n"
        "SL1,x,,1,received,2026-03-02T09:00,\n",
        encoding="utf-8",
    )
    await close_db()

    first = await _run_cli(["applications", "import", str(path)], db)
    second = await _run_cli(["applications", "import", str(path)], db)

    await init_db(db)
    out = capsys.readouterr().out
    assert (first, second) == (1, 1)
    assert "imported 3 rows: 1 new applications, 1 status changes, 0 unchanged" in out
    assert "imported 3 rows: 0 new applications, 0 status changes, 2 unchanged" in out
    assert "row 3: application_no" in out
    application = await Application.get(application_no=NUMBER)
    assert (application.status, application.seq, application.phone_tail) == ("ready", 2, "8000")


async def test_import_command_needs_a_file(db: str) -> None:
    assert await _run_cli(["applications", "import"], db) == 2
