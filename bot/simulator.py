"""`python -m bot chat`: play WeChat in a terminal so that one can talk to the bot as a citizen."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import sys
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp

from bot.errors import RefusedRequest
from bot.platform_sim import Platform
from bot.standin import Record, StandIn, read_records, template_view
from config.menu import load_menu
from config.settings import MODES, Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# WeChat drops a webhook that has not answered within 5 s (and delivers the message again).
WECHAT_WAIT_S = 5.0
# After a reply, how long to keep collecting what the bot pushes because of that message.
SETTLE_S = 0.3
SETTLE_POLL_S = 0.05
# What the menu's scanner reads when /tap names a scanner entry without a code: the main
# hall's check-in code, as printed at the entrance (see the cases' scancode_waitmsg).
DEFAULT_SCAN_RESULT = "checkin:main"
DEFAULT_LOCATION = ("22.93", "113.90", "东莞市松山湖")

REPLY_PREFIX = "公众号> "
PUSH_PREFIX = "推送> "
ERROR_PREFIX = "错误> "
NOTE_PREFIX = "-- "
PROMPT = "你> "

# The stand-in's kinds of the messages the bot pushes, and how each is labelled.
PUSH_LABELS = {"custom": "客服消息", "template": "模板消息", "subscribe": "订阅通知"}

HELP = """\
Type a line to send it as a text message (start it with // to send a text beginning with /).
  /menu                    list the menu's entries with their numbers and keys
  /tap KEY|NUMBER [ARG]    tap a menu entry (ARG: the code a scanner entry reads)
  /voice TEXT              a voice message, recognised as TEXT
  /loc LAT LON [LABEL]     send a location
  /scan SCENE              scan a parameterised QR code, as a follower
  /follow [SCENE]          follow the account (through a QR code when SCENE is given)
  /unfollow                unfollow the account
  /raw FILE                post an XML file as it is, e.g. a case from shared/cases/messages
  /mode plain|compatible|safe   how deliveries are sealed
  /user OPENID             chat as another citizen
  /help                    this list
  /quit                    leave (Ctrl-D works too)
An empty line shows what the bot pushed since the last input."""


CHAT_DESCRIPTION = """\
Play WeChat: what you type is signed (and sealed) as the platform does and posted to
the webhook. Without --url, a webhook and a WeChat API stand-in are started in this
process (settings from config/dev.toml unless --config).

Steps given as options run in order; else lines are read from the terminal, or from
stdin when it is not one. Exit status: 0, or 1 when a scripted delivery was refused or
could not be made."""


class PushSource(Protocol):
    """Where the calls the bot made to the WeChat API can be read back."""

    async def records(self) -> list[Record]:
        """Return every call recorded so far, oldest first."""
        ...


class StandInPushes:
    """Read the records of a stand-in running in this process."""

    def __init__(self, standin: StandIn) -> None:
        self.standin = standin

    async def records(self) -> list[Record]:
        return list(self.standin.records)


class RemotePushes:
    """Read the records of a stand-in running elsewhere, through its control endpoint."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def records(self) -> list[Record]:
        return await read_records(self.base_url, session=self.session)


def _read_text(path: str) -> str:
    return Path(path).expanduser().read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class MenuItem:
    number: int
    button: str
    name: str
    type: str
    key: str
    url: str


def menu_items() -> list[MenuItem]:
    """Return the menu's entries in the order the citizen sees them, numbered from 1."""
    items: list[MenuItem] = []
    for button in load_menu().get("button", []):
        for sub in button.get("sub_button", []) or [button]:
            items.append(
                MenuItem(
                    len(items) + 1,
                    button["name"],
                    sub["name"],
                    sub["type"],
                    sub.get("key", ""),
                    sub.get("url", ""),
                )
            )
    return items


class Simulator:
    """One citizen's WeChat: turns typed lines into signed deliveries and shows the answers."""

    def __init__(
        self,
        platform: Platform,
        url: str,
        session: aiohttp.ClientSession,
        pushes: PushSource | None = None,
        *,
        openid: str = "",
        settle_s: float = SETTLE_S,
    ) -> None:
        self.platform = platform
        self.url = url
        self.session = session
        self.pushes = pushes
        self.openid = openid or made_up_openid()
        self.settle_s = settle_s
        self.is_finished = False
        self.failures = 0
        self._seen = 0
        self._last_event_time = 0
        self._commands: dict[str, Callable[[str], Awaitable[list[str]]]] = {
            "menu": self._menu,
            "tap": self._tap,
            "voice": self._voice,
            "loc": self._location,
            "scan": self._scan,
            "follow": self._follow,
            "unfollow": self._unfollow,
            "raw": self._raw,
            "mode": self._mode,
            "user": self._user,
            "help": self._help,
            "quit": self._quit,
        }

    async def start(self) -> None:
        """Skip what the stand-in recorded before this chat began."""
        records = await self._records()
        self._seen = len(records)

    async def send_line(self, line: str) -> list[str]:
        """Act on one typed line; return what the chat window shows in answer."""
        line = line.strip()
        if not line:
            return await self._new_pushes()
        if line.startswith("//") or not line.startswith("/"):
            return await self._post(self.platform.text(self.openid, line.removeprefix("/")))
        name, _, rest = line[1:].partition(" ")
        command = self._commands.get(name.lower())
        if command is None:
            return [f"{NOTE_PREFIX}unknown command /{name}", *HELP.splitlines()]
        return await command(rest.strip())

    # The commands; each returns the lines to show.

    async def _menu(self, _: str) -> list[str]:
        lines, button = [], ""
        for item in menu_items():
            if item.button != button:
                button = item.button
                lines.append(button)
            lines.append(f"  {item.number:>2}  {item.key or item.url:<22} {item.name}")
        return lines

    async def _tap(self, args: str) -> list[str]:
        choice, _, arg = args.partition(" ")
        item = find_menu_item(choice)
        if item is None:
            return [f"{NOTE_PREFIX}no menu entry {choice!r}; /menu lists them"]
        return await self._post(self._tap_xml(item, arg.strip()))

    def _tap_xml(self, item: MenuItem, arg: str) -> str:
        """Return the event the platform sends for a tap on `item`, by the entry's type."""
        fields: dict[str, Any] = {"EventKey": item.key or item.url}
        if item.type == "view":
            event = "VIEW"
        elif item.type in ("scancode_push", "scancode_waitmsg"):
            event = item.type
            result = arg or DEFAULT_SCAN_RESULT
            fields["ScanCodeInfo"] = {"ScanType": "qrcode", "ScanResult": result}
        elif item.type == "location_select":
            event = item.type
            lat, lon, label = (arg.split(maxsplit=2) + list(DEFAULT_LOCATION))[:3]
            fields["SendLocationInfo"] = {
                "Location_X": lat,
                "Location_Y": lon,
                "Scale": "15",
                "Label": label,
                "Poiname": "",
            }
        else:
            event = "CLICK" if item.type == "click" else item.type
        return self.platform.event(self.openid, event, self._event_time(), **fields)

    async def _voice(self, text: str) -> list[str]:
        if not text:
            return [f"{NOTE_PREFIX}usage: /voice TEXT"]
        return await self._post(self.platform.voice(self.openid, text))

    async def _location(self, args: str) -> list[str]:
        parts = args.split(maxsplit=2)
        try:
            latitude, longitude = float(parts[0]), float(parts[1])
        except (IndexError, ValueError):
            return [f"{NOTE_PREFIX}usage: /loc LAT LON [LABEL], e.g. /loc 22.93 113.90 松山湖"]
        label = parts[2] if len(parts) > 2 else ""
        return await self._post(self.platform.location(self.openid, latitude, longitude, label))

    async def _scan(self, scene: str) -> list[str]:
        if not scene:
            return [f"{NOTE_PREFIX}usage: /scan SCENE, e.g. /scan checkin:main"]
        return await self._post(self._event("SCAN", EventKey=scene, Ticket="gQsim"))

    async def _follow(self, scene: str) -> list[str]:
        if scene:
            return await self._post(
                self._event("subscribe", EventKey=f"qrscene_{scene}", Ticket="gQsim")
            )
        return await self._post(self._event("subscribe", EventKey=""))

    async def _unfollow(self, _: str) -> list[str]:
        return await self._post(self._event("unsubscribe", EventKey=""))

    async def _raw(self, path: str) -> list[str]:
        try:
            xml = await asyncio.to_thread(_read_text, path)
        except (OSError, UnicodeDecodeError) as exc:
            return [f"{NOTE_PREFIX}cannot read {path or '(no file given)'}: {exc}"]
        return await self._post(xml)

    async def _mode(self, mode: str) -> list[str]:
        if mode not in MODES:
            return [f"{NOTE_PREFIX}usage: /mode {'|'.join(MODES)} (now {self.platform.mode})"]
        if mode != "plain" and not self.platform.aes_key:
            return [f"{NOTE_PREFIX}{mode} mode needs an aes_key in the settings"]
        self.platform.mode = mode
        return [f"{NOTE_PREFIX}deliveries are now sealed in {mode} mode"]

    async def _user(self, openid: str) -> list[str]:
        if not openid or " " in openid:
            return [f"{NOTE_PREFIX}usage: /user OPENID (now {self.openid})"]
        self.openid = openid
        return [f"{NOTE_PREFIX}now chatting as {openid}"]

    async def _help(self, _: str) -> list[str]:
        return HELP.splitlines()

    async def _quit(self, _: str) -> list[str]:
        self.is_finished = True
        return []

    # Deliveries and what comes back.

    def _event(self, event: str, **fields: Any) -> str:
        return self.platform.event(self.openid, event, self._event_time(), **fields)

    def _event_time(self) -> int:
        """Return a CreateTime later than this chat's previous event's.

        The webhook takes two events with the same sender, CreateTime, Event and EventKey for
        one delivery retried, so two taps within a second must not share a CreateTime.
        """
        self._last_event_time = max(int(time.time()), self._last_event_time + 1)
        return self._last_event_time

    async def _post(self, xml: str) -> list[str]:
        delivery = self.platform.deliver(xml)
        try:
            async with self.session.post(
                self.url,
                params=delivery.query,
                data=delivery.body,
                headers={"Content-Type": "text/xml; charset=utf-8"},
                timeout=aiohttp.ClientTimeout(total=WECHAT_WAIT_S),
            ) as response:
                status, body = response.status, await response.text()
        except TimeoutError:
            self.failures += 1
            return [
                f"{ERROR_PREFIX}no answer within {WECHAT_WAIT_S:.0f} s: WeChat would drop "
                "the connection and deliver the message again",
                *await self._new_pushes(),
            ]
        except aiohttp.ClientError as exc:
            self.failures += 1
            return [f"{ERROR_PREFIX}cannot reach {self.url}: {exc}"]
        lines = self._show_reply(status, body)
        return lines + await self._new_pushes(settle=True)

    def _show_reply(self, status: int, body: str) -> list[str]:
        if status != 200:
            self.failures += 1
            return [f"{ERROR_PREFIX}HTTP {status}: {body.strip()[:200]}"]
        try:
            reply = self.platform.open_reply(body.strip())
        except (RefusedRequest, ValueError, KeyError) as exc:
            self.failures += 1
            return [f"{ERROR_PREFIX}the reply cannot be opened: {exc}"]
        if reply is None:
            return [REPLY_PREFIX + "[success: 无被动回复]"]
        msg_type = reply.get("MsgType", "")
        if msg_type == "text":
            return block(REPLY_PREFIX, str(reply.get("Content") or ""))
        if msg_type == "transfer_customer_service":
            return [REPLY_PREFIX + "[转人工客服]"]
        shown = {k: v for k, v in reply.items() if k not in ("ToUserName", "FromUserName")}
        return block(REPLY_PREFIX, f"[{msg_type}] {json.dumps(shown, ensure_ascii=False)}")

    async def _new_pushes(self, *, settle: bool = False) -> list[str]:
        """Return the messages the bot pushed since the last look, waiting a moment if asked."""
        deadline = time.monotonic() + (self.settle_s if settle else 0)
        records = await self._records()
        while time.monotonic() < deadline:
            await asyncio.sleep(SETTLE_POLL_S)
            records = await self._records()
        if len(records) < self._seen:  # the stand-in was restarted and began a new list
            self._seen = 0
        fresh, self._seen = records[self._seen :], len(records)
        lines: list[str] = []
        for record in fresh:
            if record.kind in PUSH_LABELS and not record.duplicate:
                lines.extend(self._show_push(record))
        return lines

    async def _records(self) -> list[Record]:
        if self.pushes is None:
            return []
        try:
            return await self.pushes.records()
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            log.warning("stand-in records unreadable error=%r: pushes will not be shown", exc)
            self.pushes = None
            return []

    def _show_push(self, record: Record) -> list[str]:
        body = record.body
        header = PUSH_LABELS[record.kind]
        if body.get("template_id"):
            header += f" {body['template_id']}"
        touser = str(body.get("touser", ""))
        if touser != self.openid:
            header += f" → {touser or '?'}"
        if record.status != 200:
            header += f" 未送达: HTTP {record.status}"
        elif not record.is_sent:
            header += (
                f" 未送达: errcode={record.errcode} {record.answer.get('errmsg', '')}".rstrip()
            )
        return block(PUSH_PREFIX, "\n".join([f"[{header}]", *push_content(record)]))


def push_content(record: Record) -> list[str]:
    """Return the lines a citizen reads in a pushed message."""
    body = record.body
    if record.kind == "template":
        fields = template_view(record)
    elif isinstance(body.get("data"), dict):
        fields = {key: _value_of(item) for key, item in body["data"].items()}
    else:
        msg_type = str(body.get("msgtype", ""))
        content = body.get(msg_type)
        if msg_type == "text" and isinstance(content, dict):
            return str(content.get("content", "")).splitlines() or [""]
        return [json.dumps({k: v for k, v in body.items() if k != "touser"}, ensure_ascii=False)]
    link = body.get("url") or body.get("page")
    return [f"{key}: {value}" for key, value in fields.items()] + ([f"({link})"] if link else [])


def _value_of(item: Any) -> str:
    return str(item.get("value", "")) if isinstance(item, dict) else str(item)


def block(prefix: str, text: str) -> list[str]:
    """Return `text` as lines after `prefix`, the later lines aligned under the first."""
    indent = " " * display_width(prefix)
    lines = text.splitlines() or [""]
    return [prefix + lines[0], *(indent + line if line else "" for line in lines[1:])]


def display_width(text: str) -> int:
    """Return how many terminal columns `text` takes: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def find_menu_item(choice: str) -> MenuItem | None:
    """Find a menu entry by number, key (any case) or name."""
    for item in menu_items():
        if choice in (str(item.number), item.name) or (item.key and choice.upper() == item.key):
            return item
    return None


def made_up_openid() -> str:
    return "oSIM" + secrets.token_hex(12)


@asynccontextmanager
async def chat_session(
    settings: Settings,
    *,
    url: str = "",
    standin_url: str = "",
    openid: str = "",
    settle_s: float = SETTLE_S,
) -> AsyncIterator[Simulator]:
    """Yield a simulator posting to `url`, or to a webhook and stand-in started here."""
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        pushes: PushSource | None
        if url:
            pushes = _remote_pushes(session, standin_url or settings.api_base_url, standin_url)
        else:
            url, standin = await stack.enter_async_context(serve_in_process(settings))
            pushes = StandInPushes(standin)
        platform = Platform(
            settings.token, settings.app_id, settings.aes_key, settings.message_mode
        )
        simulator = Simulator(platform, url, session, pushes, openid=openid, settle_s=settle_s)
        await simulator.start()
        yield simulator


def _remote_pushes(
    session: aiohttp.ClientSession, records_url: str, given_url: str
) -> RemotePushes | None:
    # Never ask the real platform for a stand-in's records: only a named or a local one.
    if given_url or urlsplit(records_url).hostname in ("127.0.0.1", "localhost", "::1"):
        return RemotePushes(session, records_url)
    log.warning("pushes not shown: api_base_url is not a local stand-in (see --standin)")
    return None


@asynccontextmanager
async def serve_in_process(settings: Settings) -> AsyncIterator[tuple[str, StandIn]]:
    """Run the WeChat API stand-in and the webhook on free local ports; yield the URL."""
    from aiohttp import web

    from bot.app import WEBHOOK_PATH, create_app
    from bot.cli import prepare_database

    standin = StandIn(app_id=settings.app_id, app_secret=settings.app_secret, port=0)
    await standin.start()
    try:
        settings = replace(settings, api_base_url=standin.url)
        await prepare_database(settings)
        runner = web.AppRunner(create_app(settings), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            log.debug("webhook started port=%d standin=%s", port, standin.url)
            yield f"http://127.0.0.1:{port}{WEBHOOK_PATH}", standin
        finally:
            await runner.cleanup()
    finally:
        await standin.stop()


# The command line.


def add_parser(sub: Any) -> None:
    """Add the `chat` command to the CLI's subcommands."""
    chat = sub.add_parser(
        "chat",
        help="chat with the bot as a citizen, in the terminal",
        description=CHAT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=HELP,
    )
    chat.add_argument(
        "--url", default="", help="a running webhook, e.g. http://127.0.0.1:8080/wechat"
    )
    chat.add_argument(
        "--standin",
        default="",
        metavar="URL",
        help="with --url: the stand-in whose records show pushes (default: api_base_url)",
    )
    chat.add_argument("--openid", default="", help="the citizen to be (default: a made-up one)")
    chat.add_argument("--settle-s", type=float, default=SETTLE_S, help=argparse.SUPPRESS)
    steps = chat.add_argument_group(
        "steps", "each runs the /command of its name, in the order given; then the chat ends"
    )
    for name, nargs, metavar in (
        ("say", None, "TEXT"),
        ("tap", None, "KEY"),
        ("voice", None, "TEXT"),
        ("loc", None, "'LAT LON [LABEL]'"),
        ("scan", None, "SCENE"),
        ("follow", "?", "SCENE"),
        ("unfollow", 0, None),
        ("raw", None, "FILE"),
        ("mode", None, "MODE"),
        ("user", None, "OPENID"),
        ("menu", 0, None),
    ):
        steps.add_argument(
            f"--{name}", action=_Step, nargs=nargs, metavar=metavar, default=argparse.SUPPRESS
        )
    chat.set_defaults(run=run_chat, dev=True, steps=[])


class _Step(argparse.Action):
    """Keep a step option as the line one would type for it: `--tap K` is `/tap K`."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        value = " ".join(values) if isinstance(values, list) else values or ""
        command = self.option_strings[0].removeprefix("--")
        if command == "say":
            line = "/" + value if value.startswith("/") else value
        else:
            line = f"/{command} {value}".strip()
        namespace.steps = [*namespace.steps, line]


def run_chat(settings: Settings, args: argparse.Namespace) -> int:
    """Run the chat: the given steps, else the lines typed or piped in."""
    if not args.verbose:  # the chat owns the terminal: only warnings interrupt it
        for handler in logging.getLogger().handlers:
            handler.setLevel(logging.WARNING)
    _use_utf8(sys.stdout)
    is_tty = sys.stdin.isatty()
    if args.steps:
        lines: Iterable[str] = args.steps
    elif is_tty:
        lines = _typed_lines()
    else:
        _use_utf8(sys.stdin)
        lines = sys.stdin
    is_scripted = bool(args.steps) or not is_tty

    loop = _LoopThread()
    try:
        opened = chat_session(
            settings,
            url=args.url,
            standin_url=args.standin,
            openid=args.openid,
            settle_s=args.settle_s,
        )
        simulator = loop.run(opened.__aenter__())
        try:
            if not is_scripted:
                mode = simulator.platform.mode
                print(f"{NOTE_PREFIX}chatting as {simulator.openid} with {simulator.url} ({mode})")
                print(f"{NOTE_PREFIX}/help lists the commands, /menu the menu")
            for line in lines:
                line = line.rstrip("\r\n")
                if is_scripted:
                    print(PROMPT + line)
                for shown in loop.run(simulator.send_line(line)):
                    print(shown, flush=True)
                if simulator.is_finished:
                    break
        except KeyboardInterrupt:
            print()
        finally:
            loop.run(opened.__aexit__(None, None, None))
    finally:
        loop.close()
    return 1 if is_scripted and simulator.failures else 0


def _typed_lines() -> Iterator[str]:
    with suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())
    while True:
        try:
            yield input(PROMPT)
        except EOFError:
            print()
            return


def _use_utf8(stream: Any) -> None:
    """Read and write UTF-8 on a pipe whatever the locale says, so Chinese arrives whole."""
    encoding = (getattr(stream, "encoding", "") or "").lower().replace("-", "")
    if not stream.isatty() and encoding != "utf8" and hasattr(stream, "reconfigure"):
        stream.reconfigure(encoding="utf-8")


class _LoopThread:
    """An event loop in a thread of its own: the server keeps running while input() waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for it; Ctrl-C cancels it."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
