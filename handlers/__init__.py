"""One module per citizen service; each exposes a `router`."""

from __future__ import annotations

from bot.dispatcher import Router


def all_routers() -> list[Router]:
    """Return every service's router, in the order the dispatcher includes them."""
    from handlers import (
        booking,
        branches,
        checkin,
        classroom,
        coming_soon,
        complaint,
        consult,
        evaluation,
        guide,
        hall_info,
        postal,
        progress,
        queue,
        receipts,
        reminders,
        welcome,
    )

    return [
        # Before welcome: a score typed after a rating invitation outweighs a help-list number.
        evaluation.router,
        welcome.router,
        queue.router,
        booking.router,
        checkin.router,
        complaint.router,
        classroom.router,
        reminders.router,
        # Before consult: a question on an item's materials outweighs the FAQ's short answer.
        guide.router,
        progress.router,
        postal.router,
        # Before hall_info: an FAQ keyword ("交通违章") outweighs a hall word ("交通") beside it.
        consult.router,
        hall_info.router,
        branches.router,
        coming_soon.router,
        receipts.router,
    ]
