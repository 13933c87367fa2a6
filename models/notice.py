"""Notices pushed to citizens: one row per subject and kind, claimed before it is sent."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

NOTICE_STATES = ("pending", "sending", "sent", "delivered", "failed", "blocked", "skipped")


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

    class Meta:
        table = "notice"
        unique_together = (("ref", "kind"),)
