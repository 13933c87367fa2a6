"""One module per citizen service; each exposes a `router`."""

from __future__ import annotations

from bot.dispatcher import Router


def all_routers() -> list[Router]:
    """Return every service's router, in the order the dispatcher includes them."""
    from handlers import branches, coming_soon, consult, hall_info, receipts, welcome

    return [
        welcome.router,
        hall_info.router,
        branches.router,
        consult.router,
        coming_soon.router,
        receipts.router,
    ]
