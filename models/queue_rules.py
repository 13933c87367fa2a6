"""The queue's settings from config/queue.toml, and the refusals its rules give."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from bot.errors import CitizenError
from config.settings import CONFIG_DIR

QUEUE_FILE = CONFIG_DIR / "queue.toml"
# Another rules file for a whole run (a load test's quotas, a hall's trial): its path.
QUEUE_CONFIG_ENV = "QUEUE_CONFIG"


@dataclass(frozen=True, slots=True)
class QueueRules:
    """The hall's queue settings from config/queue.toml."""

    about_to_close_min: int = 30
    default_handling_min: float = 15.0
    handling_sample: int = 20
    near_ahead_default: int = 3
    max_requeues: int = 1
    default_remote_quota: int = 100
    quotas: dict[str, dict[str, int]] = field(default_factory=dict)
    windows: tuple[dict[str, Any], ...] = ()

    def remote_quota(self, hall_code: str, category_code: str) -> int:
        return self.quotas.get(hall_code, {}).get(category_code, self.default_remote_quota)


def load_rules(path: Path = QUEUE_FILE) -> QueueRules:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    rules = data.get("rules", {})
    return QueueRules(
        about_to_close_min=int(rules.get("about_to_close_min", 30)),
        default_handling_min=float(rules.get("default_handling_min", 15)),
        handling_sample=int(rules.get("handling_sample", 20)),
        near_ahead_default=int(rules.get("near_ahead_default", 3)),
        max_requeues=int(rules.get("max_requeues", 1)),
        default_remote_quota=int(rules.get("default_remote_quota", 100)),
        quotas={hall: dict(quota) for hall, quota in data.get("quotas", {}).items()},
        windows=tuple(data.get("windows", [])),
    )


@cache
def queue_rules() -> QueueRules:
    """Return the rules from config/queue.toml (or $QUEUE_CONFIG), read once per process."""
    return load_rules(Path(os.environ.get(QUEUE_CONFIG_ENV) or QUEUE_FILE))


# Refusals: each renders for the citizen and carries an HTTP status and a code for the staff API.


class QueueError(CitizenError):
    status = 409
    code = "conflict"


class HallClosed(QueueError):
    template = "queue/refused_closed.j2"
    code = "hall_closed"


class HallClosing(QueueError):
    template = "queue/refused_closing.j2"
    code = "hall_closing"


class QuotaUsedUp(QueueError):
    template = "queue/refused_quota.j2"
    code = "quota_used_up"


class AlreadyHolding(QueueError):
    template = "queue/refused_holding.j2"
    code = "already_holding"


class CategoryNotServed(QueueError):
    template = "queue/refused_category.j2"
    status = 400
    code = "category_not_served"


class TicketNotFound(QueueError):
    template = "queue/not_found.j2"
    status = 404
    code = "ticket_not_found"


class WrongState(QueueError):
    template = "queue/wrong_state.j2"
    code = "wrong_state"


class RequeueUsed(QueueError):
    template = "queue/refused_requeue.j2"
    code = "requeue_used"


class WindowClosed(QueueError):
    code = "window_closed"


class WindowBusy(QueueError):
    code = "window_busy"


class NotAtThisWindow(QueueError):
    status = 403
    code = "not_at_this_window"
