"""Notices pushed to citizens: one row per subject and kind, claimed before it is sent."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model

NOTICE_STATES = ("pending", "sending", "sent", "delivered", "failed", "blocked", "skipped")
# States after which nothing more is sent (delivered and blocked may still follow "sent").
FINAL_STATES = ("sent", "delivered", "failed", "blocked", "skipped")


class Notice(Model):
    """A template or subscription notice. The unique (ref, kind) makes each go out once."""

    id = fields.IntField(primary_key=True)
    kind = fields.CharField(max_length=32)
    # What the notice is about, e.g. "ticket:42" or "booking:7".
    ref = fields.CharField(max_length=64)
    openid = fields.CharField(max_length=64, db_index=True)
    status = fields.CharField(max_length=16, default="pending")
    template_id = fields.CharField(max_length=64, default="")
    # The API's idempotency key: the same openid + client_msg_id is sent once.
    client_msg_id = fields.CharField(max_length=64, default="")
    msgid = fields.CharField(max_length=32, null=True, db_index=True)
    attempts = fields.IntField(default=0)
    last_error = fields.CharField(max_length=200, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    sent_at = fields.DatetimeField(null=True)
    delivered_at = fields.DatetimeField(null=True)
    # What goes out (channel, fields, link), rendered when the notice is claimed. Emptied once
    # the notice is final: the values may name a citizen and are not needed afterwards.
    data: Any = fields.JSONField(default=dict)
    # When a worker took the notice for sending: a claim older than a job's time limit is
    # left over by a worker that died, and another may take it.
    claimed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "notice"
        unique_together = (("ref", "kind"),)


class NoticeConsent(Model):
    """A citizen's latest answer to a subscription-notice popup, per template id."""

    id = fields.IntField(primary_key=True)
    openid = fields.CharField(max_length=64, db_index=True)
    template_id = fields.CharField(max_length=64)
    is_accepted = fields.BooleanField()
    # popup, change (the citizen's notice settings) or sent (43101: refused or used up).
    source = fields.CharField(max_length=16, default="popup")
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "notice_consent"
        unique_together = (("openid", "template_id"),)
