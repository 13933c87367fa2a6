"""Administrators' API under /api/staff/admin/: follow-up cases, complaints, ratings, classroom."""

from __future__ import annotations

import functools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from bot import staff_api, staff_input
from bot.app import SERVICES
from bot.errors import BadInput, CitizenError
from bot.services import Services
from models import classroom, feedback
from models.classroom import Activity
from models.feedback import LEVELS, Complaint, Evaluation, FollowUp

log = logging.getLogger(__name__)

ADMIN = "/admin"
MAX_LIST = 200
# What the models keep of a visit note and an answer (models.feedback clips to these).
NOTE_MAX_CHARS = 1000
ANSWER_MAX_CHARS = 2000
CAPACITY_MAX = 10000
_CODE_CHARS = staff_input.column_chars(Activity, "code")
_TITLE_CHARS = staff_input.column_chars(Activity, "title")
_PLACE_CHARS = staff_input.column_chars(Activity, "place")
Handler = Callable[[web.Request], Awaitable[web.Response]]


def setup(staff: web.Application) -> None:
    """Add the administrators' routes to the staff API (behind its bearer-token check)."""
    routes = [
        ("GET", "/follow-ups", list_follow_ups),
        ("POST", "/follow-ups/{case_id}/visit", visit_follow_up),
        ("POST", "/follow-ups/{case_id}/answer", answer_follow_up),
        ("GET", "/complaints", list_complaints),
        ("POST", "/complaints/{case_id}/answer", answer_complaint),
        ("GET", "/evaluations", list_evaluations),
        ("GET", "/evaluations/stats", evaluation_stats),
        ("GET", "/activities", list_activities),
        ("POST", "/activities", create_activity),
        ("PATCH", "/activities/{activity_id}", change_activity),
        ("POST", "/activities/{activity_id}/cancel", cancel_activity),
    ]
    for method, path, handler in routes:
        staff.router.add_route(method, ADMIN + path, _admin_only(handler))


def _json_error(status: int, error: str, /, **details: Any) -> web.Response:
    return web.json_response({"error": error, **details}, status=status)


def _admin_only(handler: Handler) -> Handler:
    """Refuse window tokens, and turn refusals into JSON answers."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.Response:
        principal = request[staff_api.PRINCIPAL]
        if principal.window_code is not None:
            log.warning("admin call refused reason=window path=%s", request.path)
            return _json_error(403, "admins_only")
        try:
            return await handler(request)
        except BadInput:
            raise  # answered by the staff API's error middleware, field by field
        except (feedback.FeedbackError, classroom.ClassroomError) as exc:
            log.warning("admin action refused path=%s reason=%s", request.path, exc.code)
            return _json_error(exc.status, exc.code, **_plain(exc))
        except ValueError as exc:
            return _json_error(400, "bad_request", detail=str(exc))

    return wrapped


def _plain(exc: CitizenError) -> dict[str, Any]:
    return {k: v for k, v in exc.context.items() if isinstance(v, str | int | float | bool | None)}


def _services(request: web.Request) -> Services:
    return request.config_dict[SERVICES]


def _by(request: web.Request) -> str:
    return str(request[staff_api.PRINCIPAL].name)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json() if request.can_read_body else {}
    except json.JSONDecodeError:
        raise ValueError("body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def _iso(value: datetime | None, request: web.Request) -> str | None:
    if value is None:
        return None
    return value.astimezone(_services(request).settings.tz).isoformat()


def _limit(request: web.Request) -> int:
    return min(staff_input.query_number(request, "limit", 50), MAX_LIST)


# Follow-up cases of bad reviews.


async def _evaluation_json(evaluation: Evaluation, request: web.Request) -> dict[str, Any]:
    await evaluation.fetch_related("ticket", "category", "hall")
    return {
        "id": evaluation.id,
        "subject": evaluation.subject,
        "level": evaluation.level,
        "comment": evaluation.comment,
        "source": evaluation.source,
        "ticket": evaluation.ticket.number if evaluation.ticket else None,
        "category": evaluation.category.code if evaluation.category else None,
        "hall": evaluation.hall.code if evaluation.hall else None,
        "window": evaluation.window_code or None,
        "staff": evaluation.staff or None,
        "finished_at": _iso(evaluation.finished_at, request),
        "rated_at": _iso(evaluation.rated_at, request),
    }


async def _follow_up_json(follow_up: FollowUp, request: web.Request) -> dict[str, Any]:
    now = _services(request).now()
    evaluation = await Evaluation.get(id=follow_up.evaluation_id)
    is_visited = follow_up.visited_at or follow_up.answered_at
    return {
        "id": follow_up.id,
        "case_no": follow_up.case_no,
        "status": follow_up.status,
        "opened_at": _iso(follow_up.opened_at, request),
        "visit_due_at": _iso(follow_up.visit_due_at, request),
        "fix_due_at": _iso(follow_up.fix_due_at, request),
        "is_visit_overdue": feedback.overdue(follow_up.visit_due_at, is_visited, now),
        "is_fix_overdue": feedback.overdue(follow_up.fix_due_at, follow_up.answered_at, now),
        "visited_at": _iso(follow_up.visited_at, request),
        "visit_note": follow_up.visit_note,
        "answer": follow_up.answer,
        "answered_by": follow_up.answered_by or None,
        "answered_at": _iso(follow_up.answered_at, request),
        "review_level": follow_up.review_level,
        "review_comment": follow_up.review_comment,
        "reviewed_at": _iso(follow_up.reviewed_at, request),
        "evaluation": await _evaluation_json(evaluation, request),
    }


async def list_follow_ups(request: web.Request) -> web.Response:
    """List follow-up cases, oldest deadline first; ?status=open,visited (default: unanswered)."""
    states = request.query.get("status", "open,visited").split(",")
    unknown = set(states) - set(feedback.FOLLOW_UP_STATES)
    if unknown:
        raise ValueError(f"status is one of {', '.join(feedback.FOLLOW_UP_STATES)}")
    cases = (
        await FollowUp.filter(status__in=states)
        .order_by("fix_due_at", "id")
        .limit(_limit(request))
    )
    return web.json_response({"cases": [await _follow_up_json(c, request) for c in cases]})


async def visit_follow_up(request: web.Request) -> web.Response:
    """Record the return visit to the citizen: {"note": "..."}."""
    note = staff_input.text(await _body(request), "note", max_chars=NOTE_MAX_CHARS)
    case_id = staff_input.path_id(request, "case_id", "case")
    follow_up = await feedback.record_visit(case_id, note, _services(request).now())
    log.info("follow-up visited case=%s", follow_up.case_no)
    return web.json_response(await _follow_up_json(follow_up, request))


async def answer_follow_up(request: web.Request) -> web.Response:
    """Answer a follow-up case with the fix: {"answer": "..."}; the citizen is told."""
    answer = staff_input.text(
        await _body(request), "answer", max_chars=ANSWER_MAX_CHARS, required=True
    )
    case_id = staff_input.path_id(request, "case_id", "case")
    follow_up = await feedback.answer_follow_up(_services(request), case_id, answer, _by(request))
    return web.json_response(await _follow_up_json(follow_up, request))


# Complaints and suggestions.


def _complaint_json(complaint: Complaint, request: web.Request) -> dict[str, Any]:
    now = _services(request).now()
    return {
        "id": complaint.id,
        "case_no": complaint.case_no,
        "kind": complaint.kind or None,
        "status": complaint.status,
        "text": complaint.text,
        "images": list(complaint.images or []),
        "created_at": _iso(complaint.created_at, request),
        "due_at": _iso(complaint.due_at, request),
        "is_overdue": feedback.overdue(complaint.due_at, complaint.answered_at, now),
        "answer": complaint.answer,
        "answered_by": complaint.answered_by or None,
        "answered_at": _iso(complaint.answered_at, request),
    }


async def list_complaints(request: web.Request) -> web.Response:
    """List complaints and suggestions, oldest deadline first; ?status=open (default)."""
    states = request.query.get("status", "open").split(",")
    if set(states) - set(feedback.COMPLAINT_STATES):
        raise ValueError(f"status is one of {', '.join(feedback.COMPLAINT_STATES)}")
    cases = (
        await Complaint.filter(status__in=states).order_by("due_at", "id").limit(_limit(request))
    )
    return web.json_response({"cases": [_complaint_json(c, request) for c in cases]})


async def answer_complaint(request: web.Request) -> web.Response:
    """Answer a complaint: {"answer": "..."}; the citizen is told."""
    answer = staff_input.text(
        await _body(request), "answer", max_chars=ANSWER_MAX_CHARS, required=True
    )
    case_id = staff_input.path_id(request, "case_id", "case")
    complaint = await feedback.answer_complaint(_services(request), case_id, answer, _by(request))
    return web.json_response(_complaint_json(complaint, request))


# Evaluations.


def _month(request: web.Request) -> str:
    month = request.query.get("month")
    return (
        staff_input.month(month, "month")
        if month
        else _services(request).local_now().strftime("%Y-%m")
    )


async def list_evaluations(request: web.Request) -> web.Response:
    """List a month's evaluations: ?month=YYYY-MM&subject=ticket|hall&level=1."""
    tz = _services(request).settings.tz
    start, end = feedback.month_bounds(_month(request), tz)
    # rated_at is set once an evaluation is given: invited, unrated services are left out.
    query = Evaluation.filter(rated_at__gte=start, rated_at__lt=end)
    subject = request.query.get("subject", "")
    if subject:
        if subject not in feedback.SUBJECTS:
            raise ValueError(f"subject is one of {', '.join(feedback.SUBJECTS)}")
        query = query.filter(subject=subject)
    if "level" in request.query:
        level = staff_input.query_number(request, "level", 0, low=min(LEVELS), high=max(LEVELS))
        query = query.filter(level=level)
    found = await query.order_by("-rated_at", "-id").limit(_limit(request))
    return web.json_response({"evaluations": [await _evaluation_json(e, request) for e in found]})


async def evaluation_stats(request: web.Request) -> web.Response:
    """Return a month's bad-review rate (bad / all evaluations of services): ?month=YYYY-MM."""
    stats = await feedback.month_stats(_month(request), _services(request).settings.tz)
    return web.json_response(
        {
            "month": stats.month,
            "total": stats.overall.total,
            "bad": stats.overall.bad,
            "bad_rate": stats.overall.bad_rate,
            "defaulted": stats.defaulted,
            "by_level": {str(level): count for level, count in stats.by_level.items()},
            "by_window": {
                code: {"total": t.total, "bad": t.bad, "bad_rate": t.bad_rate}
                for code, t in stats.by_window.items()
            },
        }
    )


# Classroom activities.


def _activity_json(activity: Activity, request: web.Request) -> dict[str, Any]:
    return {
        "id": activity.id,
        "code": activity.code,
        "title": activity.title,
        "description": activity.description,
        "place": activity.place,
        "starts_at": _iso(activity.starts_at, request),
        "ends_at": _iso(activity.ends_at, request),
        "capacity": activity.capacity,
        "signed_up": activity.signed_up,
        "seats_left": activity.seats_left,
        "status": activity.status,
    }


async def list_activities(request: web.Request) -> web.Response:
    """List activities to come (?past=1 adds those that have started), soonest first."""
    query = Activity.all()
    if request.query.get("past") not in ("1", "true"):
        query = query.filter(starts_at__gt=_services(request).now())
    activities = await query.order_by("starts_at", "id").limit(_limit(request))
    return web.json_response({"activities": [_activity_json(a, request) for a in activities]})


def _activity_values(
    body: dict[str, Any], request: web.Request, *, is_new: bool
) -> dict[str, Any]:
    """Check what an administrator sent for an activity; raise ValueError naming the problem."""
    unknown = set(body) - {*classroom.ADMIN_FIELDS, "code"}
    if unknown:
        raise ValueError(f"unknown fields {', '.join(sorted(unknown))}")
    if is_new:
        missing = [f for f in ("title", "place", "starts_at", "capacity") if f not in body]
        if missing:
            raise ValueError(f"{', '.join(missing)} required")
    values: dict[str, Any] = {}
    for name, limit in (("title", _TITLE_CHARS), ("place", _PLACE_CHARS), ("description", 2000)):
        if name in body:
            is_required = name != "description"
            values[name] = staff_input.text(body, name, max_chars=limit, required=is_required)
    tz = _services(request).settings.tz
    for name in ("starts_at", "ends_at"):
        if name in body:
            values[name] = staff_input.moment(body[name], name, tz) if body[name] else None
    if "capacity" in body:
        values["capacity"] = staff_input.whole_number(
            body["capacity"], "capacity", low=1, high=CAPACITY_MAX
        )
    if values.get("starts_at") is None and "starts_at" in values:
        raise ValueError("starts_at is required")
    return values


async def create_activity(request: web.Request) -> web.Response:
    """Add an activity: {"title", "place", "starts_at", "capacity", "ends_at"?, "description"?}."""
    body = await _body(request)
    values = _activity_values(body, request, is_new=True)
    ends_at = values.get("ends_at")
    if ends_at is not None and ends_at <= values["starts_at"]:
        raise ValueError("ends_at must be after starts_at")
    if values["starts_at"] <= _services(request).now():
        raise ValueError("starts_at must be in the future")
    code = staff_input.text(body, "code", max_chars=_CODE_CHARS) or f"api-{secrets.token_hex(6)}"
    if await Activity.filter(code=code).exists():
        return _json_error(409, "code_taken", code=code)
    activity = await classroom.create_activity({**values, "code": code})
    log.info("activity created activity=%d capacity=%d", activity.id, activity.capacity)
    return web.json_response(_activity_json(activity, request), status=201)


async def _activity(request: web.Request) -> Activity:
    activity_id = staff_input.path_id(request, "activity_id", "activity")
    activity = await Activity.get_or_none(id=activity_id)
    if activity is None:
        raise classroom.ActivityNotFound()
    return activity


async def change_activity(request: web.Request) -> web.Response:
    """Change an activity's fields; a capacity below its sign-ups is refused."""
    activity = await _activity(request)
    body = await _body(request)
    if "code" in body:
        raise ValueError("code cannot be changed")
    values = _activity_values(body, request, is_new=False)
    starts_at = values.get("starts_at", activity.starts_at)
    ends_at = values.get("ends_at", activity.ends_at)
    if ends_at is not None and ends_at <= starts_at:
        raise ValueError("ends_at must be after starts_at")
    activity = await classroom.update_activity(_services(request), activity, values)
    log.info("activity changed activity=%d fields=%s", activity.id, ",".join(sorted(values)))
    return web.json_response(_activity_json(activity, request))


async def cancel_activity(request: web.Request) -> web.Response:
    """Call an activity off; it leaves the citizens' list."""
    activity = await classroom.cancel_activity(await _activity(request))
    log.info("activity cancelled activity=%d signed_up=%d", activity.id, activity.signed_up)
    return web.json_response(_activity_json(activity, request))
