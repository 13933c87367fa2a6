"""Applications in the staff API: status updates, posting certificates, and the import command."""

from __future__ import annotations

import argparse
import asyncio
import csv
import functools
import io
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bot import staff_api, staff_input
from bot.app import SERVICES
from bot.errors import BadInput
from bot.services import Services
from models import application as applications
from models.application import Application, MailRequest

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.Response]]
# Rows one call may carry: an approval system sends changes as they happen, in small batches.
MAX_ROWS = 1000
MAX_LIST = 200
CARRIER_MAX_CHARS = staff_input.column_chars(MailRequest, "carrier")
TRACKING_NO_MAX_CHARS = staff_input.column_chars(MailRequest, "tracking_no")


def setup(staff: web.Application) -> None:
    """Add the routes to the staff API, behind its bearer-token check."""
    routes = [
        ("POST", "/admin/applications", post_updates, True),
        ("POST", "/admin/applications/{no}/status", post_status, True),
        ("GET", "/applications/{no}", show_application, False),
        ("GET", "/mail-requests", list_mail_requests, False),
        ("POST", "/mail-requests/{request_id}/tracking", post_tracking, False),
    ]
    for method, path, handler, is_admin in routes:
        staff.router.add_route(method, path, _guarded(handler, is_admin=is_admin))


def _error(status: int, error: str, /, **details: Any) -> web.Response:
    return web.json_response({"error": error, **details}, status=status)


def _guarded(handler: Handler, *, is_admin: bool) -> Handler:
    """Refuse window tokens where only administrators may act; turn bad input into a 400."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.Response:
        if is_admin and request[staff_api.PRINCIPAL].window_code is not None:
            log.warning("admin call refused reason=window path=%s", request.path)
            return _error(403, "admins_only")
        try:
            return await handler(request)
        except BadInput:
            raise  # answered by the staff API's error middleware, field by field
        except ValueError as exc:
            return _error(400, "bad_request", detail=str(exc))

    return wrapped


def _services(request: web.Request) -> Services:
    return request.config_dict[SERVICES]


def _source(request: web.Request) -> str:
    return f"api:{request[staff_api.PRINCIPAL].name}"


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ValueError("body is not JSON") from None


async def post_updates(request: web.Request) -> web.Response:
    """Create or update applications: one object, a list, or {"applications": [...]}."""
    rows = rows_of(await _body(request))
    result = await applications.apply_updates(_services(request), rows, _source(request))
    status = (
        400
        if result.errors and not (result.created or result.changed or result.unchanged)
        else 200
    )
    return web.json_response(result.as_dict(), status=status)


async def post_status(request: web.Request) -> web.Response:
    """Record a new status of one application: {"status": ..., "at": ..., "note": ...}."""
    application = await _application(request)
    body = await _body(request)
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    row = {**body, "application_no": application.application_no}
    services = _services(request)
    update = applications.parse_update(row, services.settings.tz, services.now())
    event = await applications.record_status(
        services, application, update.status, update.at, update.note, _source(request)
    )
    body = await application_json(services, application)
    return web.json_response({**body, "changed": event is not None})


async def show_application(request: web.Request) -> web.Response:
    """Show an application, its history and its mail requests (the phone only as a tail)."""
    application = await _application(request)
    return web.json_response(await application_json(_services(request), application))


async def _application(request: web.Request) -> Application:
    max_chars = staff_input.column_chars(Application, "application_no")
    number = staff_input.path_code(
        request, "no", "application", max_chars=max_chars, clean=applications.normalize_no
    )
    application = await Application.get_or_none(application_no=number)
    if application is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": "application_not_found"}), content_type="application/json"
        )
    return application


async def list_mail_requests(request: web.Request) -> web.Response:
    """List mail requests, the oldest first; ?status=requested (default), mailed or withdrawn."""
    status = request.query.get("status", "requested")
    if status not in applications.MAIL_STATES:
        raise ValueError(f"status must be one of {', '.join(applications.MAIL_STATES)}")
    found = (
        await MailRequest.filter(status=status)
        .order_by("requested_at", "id")
        .limit(MAX_LIST)
        .prefetch_related("application")
    )
    return web.json_response({"mail_requests": [mail_json(r, r.application) for r in found]})


async def post_tracking(request: web.Request) -> web.Response:
    """Enter the carrier and tracking number of a posted certificate; the citizen is told."""
    request_id = staff_input.path_id(request, "request_id", "mail_request")
    mail = await MailRequest.get_or_none(id=request_id)
    if mail is None:
        return _error(404, "mail_request_not_found")
    body = await _body(request)
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    carrier = staff_input.text(body, "carrier", max_chars=CARRIER_MAX_CHARS, required=True)
    tracking_no = staff_input.text(
        body, "tracking_no", max_chars=TRACKING_NO_MAX_CHARS, required=True
    )
    if not (tracking_no.isascii() and tracking_no.isalnum()):
        raise ValueError("tracking_no must be letters and digits")
    if mail.status == "withdrawn":
        return _error(409, "mail_request_withdrawn")
    services = _services(request)
    is_new = await applications.enter_tracking(
        services, mail, carrier, tracking_no.upper(), _source(request)
    )
    log.info("tracking entered request=%d new=%s", mail.id, is_new)
    application = await Application.get(id=mail.application_id)
    return web.json_response({**mail_json(mail, application), "changed": is_new})


async def application_json(services: Services, application: Application) -> dict[str, Any]:
    events = await applications.history(application)
    mails = await MailRequest.filter(application_id=application.id).order_by("id")
    return {
        "application_no": application.application_no,
        "item_name": application.item_name,
        "item_code": application.item_code,
        "unit": application.unit,
        "phone_tail": application.phone_tail,
        "status": application.status,
        "is_mailable": application.is_mailable,
        "is_followed": application.openid is not None,
        "events": [
            {
                "seq": e.seq,
                "status": e.status,
                "at": e.at.isoformat(),
                "note": e.note,
                "source": e.source,
            }
            for e in events
        ],
        "mail_requests": [mail_json(m, application) for m in mails],
    }


def mail_json(mail: MailRequest, application: Application) -> dict[str, Any]:
    """Describe a mail request for the staff who post it: address and phone in full."""
    return {
        "id": mail.id,
        "application_no": application.application_no,
        "item_name": application.item_name,
        "status": mail.status,
        "address": mail.address,
        "phone": mail.phone,
        "carrier": mail.carrier,
        "tracking_no": mail.tracking_no,
        "requested_at": mail.requested_at.isoformat(),
        "mailed_at": mail.mailed_at.isoformat() if mail.mailed_at else None,
    }


# Files from the approval system, and the command that imports them.


def rows_of(data: Any) -> list[dict[str, Any]]:
    """Return the rows of a JSON document: one object, a list, or {"applications": [...]}."""
    if isinstance(data, dict) and "applications" in data:
        data = data["applications"]
    rows = [data] if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise ValueError('expected an object, a list, or {"applications": [...]}')
    if len(rows) > MAX_ROWS:
        raise ValueError(f"at most {MAX_ROWS} rows at once")
    return rows


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Read an export of the approval system: JSON, or CSV with a header row (UTF-8)."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        data = json.loads(text)
        if isinstance(data, dict) and "applications" in data:
            data = data["applications"]
        return [data] if isinstance(data, dict) else list(data)
    return [dict(row) for row in csv.DictReader(io.StringIO(text))]


def add_parser(sub: Any) -> None:
    """Add the `applications` command to the CLI's subcommands."""
    parser = sub.add_parser(
        "applications",
        help="import applications from the approval system, or erase old mail addresses",
        description=(
            "import FILE: a JSON list or a CSV with a header row; columns application_no, "
            "item_name, unit, item_code, phone (only its last four digits are kept), status "
            f"({', '.join(applications.STATES)}), at (ISO 8601, the hall's time without an "
            "offset), note, is_mailable. Each row is one status reached; importing a file "
            "again changes nothing. purge: erase addresses and phones of certificates posted "
            f"more than {applications.MAIL_DATA_KEEP_DAYS} days ago."
        ),
    )
    parser.add_argument("action", choices=["import", "purge"])
    parser.add_argument("file", nargs="?", type=Path, help="the file to import")
    parser.set_defaults(run=run_command)


def run_command(settings: Any, args: argparse.Namespace) -> int:
    if args.action == "import" and args.file is None:
        print("applications import needs a FILE", flush=True)
        return 2
    return asyncio.run(_run(settings, args))


async def _run(settings: Any, args: argparse.Namespace) -> int:
    from bot.worker import close_services, open_services

    rows = read_rows(args.file) if args.action == "import" else []
    services = await open_services(settings)
    try:
        if args.action == "purge":
            erased = await applications.erase_old_mail_data(services.now())
            print(f"erased the address and phone of {erased} mail requests")
            return 0
        result = await applications.apply_updates(services, rows, "import", is_history=True)
    finally:
        await close_services(services)
    print(
        f"imported {len(rows)} rows: {result.created} new applications, "
        f"{result.changed} status changes, {result.unchanged} unchanged"
    )
    for error in result.errors:
        print(f"  {error}")
    return 1 if result.errors else 0
