"""The project's exceptions; the messages of CitizenError subclasses are safe to show."""

from __future__ import annotations

from typing import Any


class BotError(Exception):
    """Base of every error the project raises on purpose."""


class RefusedRequest(BotError):
    """A webhook request that is refused with a 4xx and leaves no state behind."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class BadInput(BotError, ValueError):
    """A value staff sent that cannot be taken as it is: a 4xx JSON answer, nothing changed.

    A ValueError too, so that the rows of an import report it as they report any bad row.
    """

    def __init__(self, error: str, detail: str = "", *, status: int = 400) -> None:
        super().__init__(detail or error)
        self.error = error
        self.detail = detail
        self.status = status


class CitizenError(BotError):
    """A rule the citizen ran into; `template` and `context` render the polite answer."""

    template = "errors/generic.j2"

    def __init__(self, reason: str = "", **context: Any) -> None:
        super().__init__(reason or self.__class__.__name__)
        self.context = context


class WeChatAPIError(BotError):
    """The WeChat API answered with a non-zero errcode."""

    def __init__(self, errcode: int, errmsg: str, path: str = "") -> None:
        super().__init__(f"errcode={errcode} errmsg={errmsg} path={path}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.path = path

    @property
    def is_token_error(self) -> bool:
        return self.errcode in (40001, 40014, 42001)

    @property
    def is_retryable(self) -> bool:
        return self.errcode == -1  # system busy; quota (45009) is not worth retrying soon

    @property
    def is_not_follower(self) -> bool:
        return self.errcode in (43004, 40003)


class WeChatTransportError(BotError):
    """The WeChat API could not be reached or gave no JSON; the message holds no URL or token."""

    def __init__(self, path: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"transport failure path={path} reason={reason} status={status}")
        self.path = path
        self.reason = reason
        self.status = status

    @property
    def is_retryable(self) -> bool:
        return self.status is None or self.status >= 500
