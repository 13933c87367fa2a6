"""Route an inbound message to one handler: by event, menu key, QR scene, dialog or words."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.dialogs import Dialog
from bot.errors import CitizenError
from bot.protocol import Incoming

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

# Words that leave any dialog, whatever step it is at.
CANCEL_WORDS = frozenset({"取消", "退出", "算了", "不要了", "返回", "cancel", "quit", "exit"})
# Events that mean the citizen pressed something in the menu.
TAP_EVENTS = frozenset({"click", "scancode_push", "scancode_waitmsg", "location_select"})
_TRAILING = "。.!！?？~～,，、；;：: "


@dataclass(slots=True)
class Reply:
    """What goes back: a text, a hand-over to a human agent, or nothing (`success`)."""

    text: str | None = None
    is_transfer: bool = False
    # A customer-service text sent just after the reply: the citizen sees nothing of a
    # hand-over itself, so this says it happened.
    then_text: str | None = None

    @property
    def is_empty(self) -> bool:
        return self.text is None and not self.is_transfer


SUCCESS = Reply()


class PassOn(Exception):
    """Raised by a dialog's handler for words that are no answer to it ("取号" typed mid-way).

    The dispatcher leaves the dialog and routes the same words as if no dialog were open.
    """


class TapInstead(Exception):
    """Raised by a handler to answer as the menu entry `key` would ("2" picked from a list)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(slots=True)
class Context:
    """Everything a handler needs for one message."""

    incoming: Incoming
    services: Services
    dialog: Dialog
    language: str = "zh"
    service: str = ""
    words: str = ""
    match: re.Match[str] | None = None
    # Tells words another service acts on outright (取消A001, 取消1, TS000001); the dispatcher
    # sets it. A dialog taking free text passes those on rather than keep them as text.
    is_command: Callable[[str], bool] = lambda words: False

    @property
    def openid(self) -> str:
        return self.incoming.openid

    def now(self) -> datetime:
        return self.services.now()

    def render(self, template: str, /, **context: Any) -> str:
        return self.services.texts.render(template, self.language, **context)

    def reply(self, template: str, /, **context: Any) -> Reply:
        """Answer with a rendered template."""
        return Reply(self.render(template, **context))


Handler = Callable[[Context], Awaitable[Reply | None]]


@dataclass(slots=True)
class Route:
    service: str
    handler: Handler


@dataclass(slots=True)
class _TextRoute:
    service: str
    handler: Handler
    keywords: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    is_command: bool = False


class Router:
    """The triggers of one service module; included by the dispatcher."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.events: dict[str, Handler] = {}
        self.menu_keys: dict[str, Handler] = {}
        self.scenes: dict[str, Handler] = {}
        self.dialog_states: dict[str, Handler] = {}
        self.message_types: dict[str, Handler] = {}
        self.texts: list[_TextRoute] = []
        self.fallback: Handler | None = None

    def _register(self, table: dict[str, Handler], names: Iterable[str]) -> Callable[..., Any]:
        def decorator(handler: Handler) -> Handler:
            for name in names:
                if name in table:
                    raise ValueError(f"{self.service}: {name!r} is registered twice")
                table[name] = handler
            return handler

        return decorator

    def event(self, *events: str) -> Callable[[Handler], Handler]:
        """Handle these events (lower case, as wechatpy names them: subscribe, scan, ...)."""
        return self._register(self.events, [e.lower() for e in events])

    def menu(self, *keys: str) -> Callable[[Handler], Handler]:
        """Handle a menu entry (its EventKey), from a click or a scan entry."""
        return self._register(self.menu_keys, keys)

    def scene(self, *prefixes: str) -> Callable[[Handler], Handler]:
        """Handle a QR scene `prefix:...`, by follow, SCAN or the menu's scanner alike."""
        return self._register(self.scenes, prefixes)

    def dialog(self, *states: str) -> Callable[[Handler], Handler]:
        """Handle what a citizen types while the dialog is in one of these states."""
        return self._register(self.dialog_states, states)

    def message(self, *types: str) -> Callable[[Handler], Handler]:
        """Handle a message type (image, location, link, ...)."""
        return self._register(self.message_types, types)

    def text(
        self, *keywords: str, pattern: str | None = None, is_command: bool = False
    ) -> Callable[[Handler], Handler]:
        """Handle typed or spoken words: a keyword anywhere in them, or a regex on them.

        `is_command`: the words act on something the citizen holds (cancel a number, look up
        a case); a dialog waiting for free text lets them through (Context.is_command).
        """

        def decorator(handler: Handler) -> Handler:
            compiled = re.compile(pattern) if pattern else None
            words = tuple(normalize(k) for k in keywords)
            if not all(words):
                raise ValueError(f"{self.service}: a keyword is empty once normalized")
            self.texts.append(_TextRoute(self.service, handler, words, compiled, is_command))
            return handler

        return decorator

    def default(self, handler: Handler) -> Handler:
        """Handle text that nothing else claimed (one router only)."""
        self.fallback = handler
        return handler


def is_number(text: str) -> bool:
    """Tell a typed choice number: ASCII digits only, short enough for int().

    str.isdigit() also accepts "⓵" or "፩", which int() refuses, and int() refuses 5,000 digits.
    """
    return text.isascii() and text.isdecimal() and len(text) <= 9


# Invisible format characters (zero-width space, BOM, direction marks, soft hyphen...), which
# strip() keeps: a message of only these echoed as empty quotes. The zero-width joiner stays
# where it holds an emoji sequence together (_drop_loose_joiners).
_INVISIBLE = re.compile(
    "[\u00ad\u061c\u180e\u200b\u200c\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]"
)


def normalize(text: str) -> str:
    """Fold what a citizen types into a comparable form: width, case, spaces, end punctuation."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    if "\u200d" in text:
        text = _drop_loose_joiners(text)
    text = text.strip().lower()
    text = re.sub(r"\s+", " ", text)
    return text.strip(_TRAILING)


def _drop_loose_joiners(text: str) -> str:
    """Drop each zero-width joiner that does not join two parts of an emoji (👨‍👩‍👧)."""
    kept = []
    for i, char in enumerate(text):
        if char == "\u200d":
            before = text[i - 1] if i else ""
            after = text[i + 1] if i + 1 < len(text) else ""
            if not (_is_emoji_part(before) and _is_emoji_part(after)):
                continue
        kept.append(char)
    return "".join(kept)


def _is_emoji_part(char: str) -> bool:
    return bool(char) and (char == "\ufe0f" or unicodedata.category(char) in ("So", "Sk"))


class Dispatcher:
    """Find the one handler for a message and turn whatever it raises into a polite reply."""

    def __init__(self, routers: Iterable[Router]) -> None:
        self.routers = list(routers)
        self.events: dict[str, Route] = {}
        self.menu_keys: dict[str, Route] = {}
        self.scenes: dict[str, Route] = {}
        self.dialog_states: dict[str, Route] = {}
        self.message_types: dict[str, Route] = {}
        self.exact: dict[str, Route] = {}
        self.contains: list[tuple[str, Route]] = []
        self.patterns: list[tuple[re.Pattern[str], Route]] = []
        self.command_words: set[str] = set()
        self.command_patterns: list[re.Pattern[str]] = []
        self.fallback: Route | None = None
        for router in self.routers:
            self._include(router)
        # Longer keywords first, so "预约取号" wins over "取号".
        self.contains.sort(key=lambda item: -len(item[0]))

    def _include(self, router: Router) -> None:
        tables = [
            (router.events, self.events),
            (router.menu_keys, self.menu_keys),
            (router.scenes, self.scenes),
            (router.dialog_states, self.dialog_states),
            (router.message_types, self.message_types),
        ]
        for source, target in tables:
            for name, handler in source.items():
                if name in target:
                    raise ValueError(f"{name!r} is claimed by {target[name].service} too")
                target[name] = Route(router.service, handler)
        for text_route in router.texts:
            route = Route(router.service, text_route.handler)
            for word in text_route.keywords:
                if word in self.exact:
                    raise ValueError(f"keyword {word!r} is claimed by {self.exact[word].service}")
                self.exact[word] = route
                self.contains.append((word, route))
            if text_route.pattern is not None:
                self.patterns.append((text_route.pattern, route))
            if text_route.is_command:
                self.command_words.update(text_route.keywords)
                if text_route.pattern is not None:
                    self.command_patterns.append(text_route.pattern)
        if router.fallback is not None:
            if self.fallback is not None:
                raise ValueError("only one router may have a default handler")
            self.fallback = Route(router.service, router.fallback)

    @property
    def all_keywords(self) -> list[str]:
        return sorted(self.exact)

    def is_command(self, words: str) -> bool:
        """Tell words that act on something outright, whatever dialog is open (see text)."""
        return words in self.command_words or any(p.search(words) for p in self.command_patterns)

    async def dispatch(self, ctx: Context) -> Reply:
        """Run the handler for `ctx.incoming`; every error becomes a reply and a log line."""
        ctx.is_command = self.is_command
        route = await self._resolve(ctx)
        if route is None:
            return SUCCESS
        return await self._run(ctx, route)

    async def _run(self, ctx: Context, route: Route) -> Reply:
        ctx.service = route.service
        try:
            reply = await route.handler(ctx)
        except TapInstead as tap:
            menu_route = self.menu_keys.get(tap.key)
            if menu_route is None or menu_route is route:
                log.error(
                    "tap on a key nobody else answers key=%s service=%s", tap.key, ctx.service
                )
                return ctx.reply("errors/generic.j2")
            if ctx.dialog.is_active:
                await ctx.dialog.finish()
            return await self._run(ctx, menu_route)
        except PassOn:
            if not ctx.dialog.is_active:
                log.error("words passed on outside a dialog service=%s", ctx.service)
                return ctx.reply("errors/generic.j2")
            await ctx.dialog.finish()
            return await self.dispatch(ctx)
        except CitizenError as exc:
            log.warning("request refused service=%s reason=%s", ctx.service, exc)
            return ctx.reply(exc.template, **exc.context)
        except Exception:
            log.exception("handler failed service=%s", ctx.service)
            return ctx.reply("errors/generic.j2")
        return reply if reply is not None else SUCCESS

    async def _resolve(self, ctx: Context) -> Route | None:
        incoming = ctx.incoming
        if incoming.msg_type == "event":
            return await self._resolve_event(ctx)
        if incoming.msg_type in ("text", "voice") and normalize(incoming.text):
            return await self._resolve_text(ctx)
        if incoming.msg_type == "text":
            return self.fallback
        if ctx.dialog.is_active:
            # A dialog may take a picture as its next answer: `@router.dialog("state/image")`.
            route = self.dialog_states.get(f"{ctx.dialog.state}/{incoming.msg_type}")
            if route is not None:
                return route
        route = self.message_types.get(incoming.msg_type)
        return route or self.message_types.get("*")

    async def _resolve_event(self, ctx: Context) -> Route | None:
        incoming = ctx.incoming
        route = None
        if incoming.scene:
            prefix = incoming.scene.split(":", 1)[0]
            route = self.scenes.get(prefix)
        if route is None and incoming.event_key and incoming.event not in ("view",):
            route = self.menu_keys.get(incoming.event_key)
        is_tap = route is not None or incoming.event in TAP_EVENTS
        if is_tap and ctx.dialog.is_active:
            # A menu tap or a scan starts afresh: whatever dialog was open is left cleanly.
            await ctx.dialog.finish()
        if route is None:
            route = self.events.get(incoming.event)
        return route or self.events.get("*")

    async def _resolve_text(self, ctx: Context) -> Route | None:
        words = normalize(ctx.incoming.text)
        ctx.words = words
        dialog = ctx.dialog
        if dialog.is_active:
            if words in CANCEL_WORDS:
                return self.events.get("dialog_cancelled")
            route = self.dialog_states.get(dialog.state or "")
            if route is not None:
                return route
        route = self.exact.get(words)
        if route is None:
            for pattern, candidate in self.patterns:
                match = pattern.search(words)
                if match:
                    ctx.match = match
                    route = candidate
                    break
        if route is None:
            route = next((r for word, r in self.contains if word in words), None)
        if route is None and dialog.is_expired:
            return self.events.get("dialog_expired")
        return route or self.fallback
