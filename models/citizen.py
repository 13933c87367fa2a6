"""Citizens, known by openid, and whether they still follow the account."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.models import Model


class Citizen(Model):
    """A follower of the account. No name, phone or ID number is kept here."""

    id = fields.IntField(primary_key=True)
    openid = fields.CharField(max_length=64, unique=True)
    is_following = fields.BooleanField(default=True)
    followed_at = fields.DatetimeField(null=True)
    unfollowed_at = fields.DatetimeField(null=True)
    language = fields.CharField(max_length=8, default="zh")
    # People ahead at which "almost your turn" is sent; NULL: the hall's default (queue.toml)
    near_ahead = fields.SmallIntField(null=True)
    # Optional notice kinds the citizen turned off (提醒设置), e.g. ["classroom_reminder"]
    muted_notices: Any = fields.JSONField(default=list)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "citizen"

    @classmethod
    async def follow(cls, openid: str, at: datetime) -> Citizen:
        """Record a follow (or a return after an unfollow)."""
        citizen, _ = await cls.get_or_create(openid=openid, defaults={"followed_at": at})
        if not citizen.is_following or citizen.followed_at is None:
            citizen.is_following, citizen.followed_at = True, at
            await citizen.save(update_fields=["is_following", "followed_at", "updated_at"])
        return citizen

    @classmethod
    async def unfollow(cls, openid: str, at: datetime | None) -> None:
        """Mark the citizen as gone: no notice is sent to them again.

        A citizen who chatted but never had a follow recorded (they followed before the
        account's backend ran) gets a row saying so. `at`: when they unfollowed, if they did.
        """
        values: dict[str, Any] = {"is_following": False}
        if at is not None:
            values["unfollowed_at"] = at
        if await cls.filter(openid=openid).update(**values):
            return
        try:
            await cls.create(openid=openid, **values)
        except IntegrityError:  # made meanwhile
            await cls.filter(openid=openid).update(**values)

    def __str__(self) -> str:
        return f"Citizen({self.openid[:6]}…)"
