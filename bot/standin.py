"""A local stand-in of the WeChat HTTP API, so that tests and dev runs never reach the real one."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import logging
import secrets
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from config.settings import Settings

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/_standin"
TOKEN_TTL_S = 7200
# A token from cgi-bin/token stays valid this long after the next one is issued.
TOKEN_OVERLAP_S = 300
STABLE_FORCE_PER_DAY = 20
TOKEN_CALLS_PER_DAY = 2000
CLIENT_MSG_ID_TTL_S = 600
TEMPLATE_FIELD_SHOWN_CHARS = 20
TEMPLATE_HIDDEN_FIELDS = ("first", "remark")

# The menu's limits (menu/create): counts, and sizes in UTF-8 bytes.
MAX_BUTTONS = 3
MAX_SUB_BUTTONS = 5
MAX_BUTTON_NAME_BYTES = 16
MAX_SUB_BUTTON_NAME_BYTES = 60
MAX_KEY_BYTES = 128
MAX_URL_BYTES = 1024
KEYED_TYPES = frozenset(
    {"click", "scancode_push", "scancode_waitmsg", "pic_sysphoto", "pic_photo_or_album"}
    | {"pic_weixin", "location_select"}
)
UNKEYED_TYPES = {"view", "miniprogram", "media_id", "article_id", "article_view_limited"}
MENU_TYPES = KEYED_TYPES | UNKEYED_TYPES
CUSTOM_TYPES = frozenset(
    {"text", "image", "voice", "video", "music", "news", "mpnews", "mpnewsarticle"}
    | {"msgmenu", "wxcard", "miniprogrampage"}
)
QR_ACTIONS = frozenset({"QR_SCENE", "QR_STR_SCENE", "QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE"})
QR_DEFAULT_EXPIRE_S = 60
QR_MAX_EXPIRE_S = 30 * 24 * 3600
QR_MAX_PERMANENT_ID = 100_000

KIND_PATHS: dict[str, tuple[str, ...]] = {
    "token": ("/cgi-bin/token", "/cgi-bin/stable_token"),
    "custom": ("/cgi-bin/message/custom/send",),
    "template": ("/cgi-bin/message/template/send",),
    "subscribe": ("/cgi-bin/message/subscribe/bizsend",),
    "menu": ("/cgi-bin/menu/create",),
    "menu_get": ("/cgi-bin/menu/get",),
    "qrcode": ("/cgi-bin/qrcode/create",),
}
PATH_KINDS = {path: kind for kind, paths in KIND_PATHS.items() for path in paths}

ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40008: "invalid message type",
    40013: "invalid appid",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40020: "invalid button url size",
    40023: "invalid sub button size",
    40024: "invalid sub button type",
    40025: "invalid sub button name size",
    40026: "invalid sub button key size",
    40027: "invalid sub button url size",
    40037: "invalid template_id",
    40097: "invalid args",
    40125: "invalid appsecret",
    41001: "access_token missing",
    42001: "access_token expired",
    43004: "require subscribe",
    44004: "empty content",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    46003: "menu no exist",
    47001: "data format error",
    47003: "argument invalid! data.value invalid",
}


class Answer(Exception):
    """Raised inside a handler to answer with a WeChat errcode."""

    def __init__(self, errcode: int, errmsg: str = "") -> None:
        super().__init__(errcode)
        self.errcode = errcode
        self.errmsg = errmsg or ERRMSG.get(errcode, "error")


@dataclass
class Record:
    """One request the stand-in received, and what it answered."""

    path: str
    query: dict[str, str]
    body: dict[str, Any]
    at: float
    answer: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    # A template send repeating an openid + client_msg_id: accepted, not sent again.
    duplicate: bool = False

    @property
    def kind(self) -> str:
        return PATH_KINDS.get(self.path, "")

    @property
    def errcode(self) -> int:
        return int(self.answer.get("errcode", 0) or 0)

    @property
    def is_sent(self) -> bool:
        """Tell whether the request was answered with success and not as a duplicate."""
        return (
            self.status == 200 and self.errcode == 0 and bool(self.answer) and not self.duplicate
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"kind": self.kind}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        return cls(
            path=data["path"],
            query=dict(data["query"]),
            body=dict(data["body"]),
            at=float(data["at"]),
            answer=dict(data.get("answer", {})),
            status=int(data.get("status", 200)),
            duplicate=bool(data.get("duplicate", False)),
        )


@dataclass(slots=True)
class _Break:
    status: int
    body: str


Route = Callable[[Record], Awaitable[dict[str, Any]]]


class StandIn:
    """Answer the API calls the project makes as the platform does, and keep what it received.

    Its clock (`clock`, seconds) decides token expiry and the client_msg_id window, so a test
    can move time on. `unfollowed` openids get 43004 (template, subscribe) or 45015 (custom).
    """

    def __init__(
        self, *, app_id: str = "", app_secret: str = "", host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.host = host
        self.port = port
        self.records: list[Record] = []
        self.url = ""
        self.clock: Callable[[], float] = time.time
        self.token_ttl_s = TOKEN_TTL_S
        self.unfollowed: set[str] = set()
        self.menu: dict[str, Any] | None = None
        self._tokens: dict[str, float] = {}  # token -> expiry on the clock
        self._stable: str | None = None
        self._plain: str | None = None
        self._force_count = 0
        self._token_count = 0
        self._msgids = itertools.count(2_000_000_001)
        self._client_msg_ids: dict[tuple[str, str], tuple[int, float]] = {}
        self._tickets: dict[str, str] = {}
        self._failures: dict[str, deque[tuple[int, str]]] = {}
        self._delays: dict[str, deque[float]] = {}
        self._breaks: dict[str, deque[_Break]] = {}
        self._runner: web.AppRunner | None = None
        self._routes: dict[tuple[str, str], Route] = {
            ("GET", "/cgi-bin/token"): self._token,
            ("POST", "/cgi-bin/stable_token"): self._stable_token,
            ("POST", "/cgi-bin/message/custom/send"): self._custom_send,
            ("POST", "/cgi-bin/message/template/send"): self._template_send,
            ("POST", "/cgi-bin/message/subscribe/bizsend"): self._subscribe_send,
            ("POST", "/cgi-bin/menu/create"): self._menu_create,
            ("GET", "/cgi-bin/menu/get"): self._menu_get,
            ("POST", "/cgi-bin/qrcode/create"): self._qrcode_create,
        }

    def make_app(self) -> web.Application:
        """Build the aiohttp application that serves the API and the control endpoints."""
        app = web.Application()
        for method, path in self._routes:
            app.router.add_route(method, path, self._serve)
        app.router.add_get(CONTROL_PREFIX + "/records", self._control_records)
        app.router.add_post(CONTROL_PREFIX + "/fail_next", self._control_fail_next)
        app.router.add_post(CONTROL_PREFIX + "/delay_next", self._control_delay_next)
        app.router.add_post(CONTROL_PREFIX + "/clear", self._control_clear)
        return app

    async def start(self) -> None:
        """Listen on host:port (port 0: any free one) and set `url`."""
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.url = f"http://{self.host}:{self.port}"
        log.info("api stand-in listening url=%s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def fail_next(self, path: str, errcode: int, times: int = 1, errmsg: str = "") -> None:
        """Answer the next `times` calls of a path (or a kind) with `errcode`."""
        for one in _paths(path):
            queue = self._failures.setdefault(one, deque())
            queue.extend([(errcode, errmsg or ERRMSG.get(errcode, "error"))] * times)

    def delay_next(self, path: str, seconds: float, times: int = 1) -> None:
        """Hold the next `times` calls of a path (or a kind) for `seconds` before answering."""
        for one in _paths(path):
            self._delays.setdefault(one, deque()).extend([seconds] * times)

    def break_next(
        self, path: str, status: int = 502, body: str = "<html>bad gateway</html>", times: int = 1
    ) -> None:
        """Answer the next `times` calls of a path (or a kind) with an HTTP error page."""
        for one in _paths(path):
            self._breaks.setdefault(one, deque()).extend([_Break(status, body)] * times)

    def sent(self, kind: str) -> list[Record]:
        """Return what was delivered of one kind: answered with success and not a duplicate."""
        if kind not in KIND_PATHS:
            raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KIND_PATHS)}")
        return [r for r in self.records if r.kind == kind and r.is_sent]

    def clear(self) -> None:
        """Forget records, queued faults and sent client_msg_ids; tokens and the menu stay."""
        self.records.clear()
        self._failures.clear()
        self._delays.clear()
        self._breaks.clear()
        self._client_msg_ids.clear()

    def expire_tokens(self) -> None:
        """Let every token issued so far expire now (calls with it get 42001)."""
        now = self.clock()
        self._tokens = {token: min(at, now) for token, at in self._tokens.items()}

    async def _serve(self, request: web.Request) -> web.Response:
        record = Record(request.path, dict(request.query), {}, self.clock())
        self.records.append(record)
        try:
            record.body = await _json_body(request)
            delay_s = _take(self._delays, request.path)
            if delay_s:
                await asyncio.sleep(delay_s)
            broken = _take(self._breaks, request.path)
            if broken is not None:
                record.status = broken.status
                return web.Response(status=broken.status, text=broken.body)
            failure = _take(self._failures, request.path)
            if failure is not None:
                raise Answer(*failure)
            route = self._routes[(request.method, request.path)]
            if record.kind != "token":
                self._check_token(record.query.get("access_token", ""))
            record.answer = await route(record)
        except Answer as exc:
            record.answer = {"errcode": exc.errcode, "errmsg": exc.errmsg}
        log.debug("stand-in answered path=%s errcode=%d", request.path, record.errcode)
        return web.json_response(record.answer, dumps=_dumps)

    def _check_token(self, token: str) -> None:
        if not token:
            raise Answer(41001)
        expires_at = self._tokens.get(token)
        if expires_at is None:
            raise Answer(40001)
        if expires_at <= self.clock():
            raise Answer(42001)

    def _check_app(self, appid: str, secret: str) -> None:
        if self.app_id and appid != self.app_id:
            raise Answer(40013)
        if self.app_secret and secret != self.app_secret:
            raise Answer(40125)

    def _issue(self) -> str:
        token = secrets.token_urlsafe(48)
        self._tokens[token] = self.clock() + self.token_ttl_s
        return token

    def _is_valid(self, token: str | None) -> bool:
        return token is not None and self._tokens.get(token, 0.0) > self.clock()

    def _token_answer(self, token: str) -> dict[str, Any]:
        return {"access_token": token, "expires_in": round(self._tokens[token] - self.clock())}

    async def _token(self, record: Record) -> dict[str, Any]:
        query = record.query
        if query.get("grant_type") != "client_credential":
            raise Answer(40002)
        self._check_app(query.get("appid", ""), query.get("secret", ""))
        self._token_count += 1
        if self._token_count > TOKEN_CALLS_PER_DAY:
            raise Answer(45009)
        if self._plain is not None and self._plain in self._tokens:
            overlap_end = self.clock() + TOKEN_OVERLAP_S
            self._tokens[self._plain] = min(self._tokens[self._plain], overlap_end)
        self._plain = self._issue()
        return self._token_answer(self._plain)

    async def _stable_token(self, record: Record) -> dict[str, Any]:
        body = record.body
        if body.get("grant_type") != "client_credential":
            raise Answer(40002)
        self._check_app(str(body.get("appid", "")), str(body.get("secret", "")))
        force = body.get("force_refresh") is True
        if force:
            self._force_count += 1
            if self._force_count > STABLE_FORCE_PER_DAY:
                raise Answer(45009)
        if force or not self._is_valid(self._stable):
            if self._stable is not None:
                self._tokens.pop(self._stable, None)  # a forced refresh ends the old one now
            self._stable = self._issue()
        assert self._stable is not None
        return self._token_answer(self._stable)

    def _check_touser(self, body: dict[str, Any], unfollowed_errcode: int) -> str:
        openid = body.get("touser")
        if not isinstance(openid, str) or not openid:
            raise Answer(40003)
        if openid in self.unfollowed:
            raise Answer(unfollowed_errcode)
        return openid

    async def _custom_send(self, record: Record) -> dict[str, Any]:
        body = record.body
        self._check_touser(body, 45015)
        msgtype = body.get("msgtype")
        if msgtype not in CUSTOM_TYPES:
            raise Answer(40008)
        if msgtype == "text":
            text = body.get("text")
            if not isinstance(text, dict) or not str(text.get("content", "")):
                raise Answer(44004)
        return {"errcode": 0, "errmsg": "ok"}

    async def _template_send(self, record: Record) -> dict[str, Any]:
        body = record.body
        openid = self._check_touser(body, 43004)
        _check_notice(body)
        client_msg_id = str(body.get("client_msg_id", "") or "")
        now = self.clock()
        if client_msg_id:
            seen = self._client_msg_ids.get((openid, client_msg_id))
            if seen is not None and now - seen[1] < CLIENT_MSG_ID_TTL_S:
                record.duplicate = True
                return {"errcode": 0, "errmsg": "ok", "msgid": seen[0]}
        msgid = next(self._msgids)
        if client_msg_id:
            self._client_msg_ids[(openid, client_msg_id)] = (msgid, now)
        return {"errcode": 0, "errmsg": "ok", "msgid": msgid}

    async def _subscribe_send(self, record: Record) -> dict[str, Any]:
        self._check_touser(record.body, 43004)
        _check_notice(record.body)
        return {"errcode": 0, "errmsg": "ok", "msgid": next(self._msgids)}

    async def _menu_create(self, record: Record) -> dict[str, Any]:
        check_menu(record.body)
        self.menu = {"button": record.body["button"]}
        return {"errcode": 0, "errmsg": "ok"}

    async def _menu_get(self, record: Record) -> dict[str, Any]:
        if self.menu is None:
            raise Answer(46003)
        return {"menu": self.menu}

    async def _qrcode_create(self, record: Record) -> dict[str, Any]:
        body = record.body
        action = body.get("action_name")
        if action not in QR_ACTIONS:
            raise Answer(40097, "invalid action_name")
        info = body.get("action_info")
        scene = info.get("scene") if isinstance(info, dict) else None
        scene_key = _scene_key(action, scene if isinstance(scene, dict) else {})
        if action.startswith("QR_LIMIT"):
            # A permanent code for a scene is the same code each time it is asked for.
            ticket = self._tickets.setdefault(scene_key, _ticket(scene_key, ""))
            return {"ticket": ticket, "url": _qr_url(ticket)}
        expire_s = int(body.get("expire_seconds", QR_DEFAULT_EXPIRE_S) or QR_DEFAULT_EXPIRE_S)
        expire_s = min(max(expire_s, 1), QR_MAX_EXPIRE_S)
        ticket = _ticket(scene_key, secrets.token_hex(4))
        return {"ticket": ticket, "expire_seconds": expire_s, "url": _qr_url(ticket)}

    async def _control_records(self, request: web.Request) -> web.Response:
        kind = request.query.get("kind", "")
        only_sent = request.query.get("sent", "") in ("1", "true")
        if kind and kind not in KIND_PATHS:
            return web.json_response({"error": f"unknown kind {kind!r}"}, status=400)
        chosen = [
            r
            for r in self.records
            if (not kind or r.kind == kind) and (not only_sent or r.is_sent)
        ]
        return web.json_response({"records": [r.to_json() for r in chosen]}, dumps=_dumps)

    async def _control_fail_next(self, request: web.Request) -> web.Response:
        data = await _control_body(request)
        self.fail_next(
            str(data["path"]),
            int(data["errcode"]),
            int(data.get("times", 1)),
            str(data.get("errmsg", "")),
        )
        return web.json_response({"ok": True})

    async def _control_delay_next(self, request: web.Request) -> web.Response:
        data = await _control_body(request)
        self.delay_next(str(data["path"]), float(data["seconds"]), int(data.get("times", 1)))
        return web.json_response({"ok": True})

    async def _control_clear(self, request: web.Request) -> web.Response:
        self.clear()
        return web.json_response({"ok": True})


def check_menu(menu: dict[str, Any]) -> None:
    """Raise the platform's errcode for the first breach of the menu's limits."""
    buttons = menu.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_BUTTONS:
        raise Answer(40016)
    for button in buttons:
        if not isinstance(button, dict):
            raise Answer(40017)
        if not 1 <= _bytes(button.get("name")) <= MAX_BUTTON_NAME_BYTES:
            raise Answer(40018)
        if button.get("sub_button"):
            subs = button["sub_button"]
            if not isinstance(subs, list) or len(subs) > MAX_SUB_BUTTONS:
                raise Answer(40023)
            for sub in subs:
                if not isinstance(sub, dict):
                    raise Answer(40024)
                if not 1 <= _bytes(sub.get("name")) <= MAX_SUB_BUTTON_NAME_BYTES:
                    raise Answer(40025)
                _check_leaf(sub, type_code=40024, key_code=40026, url_code=40027)
        else:
            _check_leaf(button, type_code=40017, key_code=40019, url_code=40020)


def _check_leaf(item: dict[str, Any], *, type_code: int, key_code: int, url_code: int) -> None:
    kind = item.get("type")
    if kind not in MENU_TYPES:
        raise Answer(type_code)
    if kind in KEYED_TYPES and not 1 <= _bytes(item.get("key")) <= MAX_KEY_BYTES:
        raise Answer(key_code)
    if kind == "view":
        url = item.get("url")
        if not 1 <= _bytes(url) <= MAX_URL_BYTES or not str(url).startswith(
            ("http://", "https://")
        ):
            raise Answer(url_code)


def _check_notice(body: dict[str, Any]) -> None:
    template_id = body.get("template_id")
    if not isinstance(template_id, str) or not template_id:
        raise Answer(40037)
    data = body.get("data")
    if not isinstance(data, dict):
        raise Answer(47001)
    for key, item in data.items():
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            raise Answer(47003, f"argument invalid! data.{key}.value invalid")


def template_view(record: Record) -> dict[str, str]:
    """Return the fields of a template send as the citizen sees them: cut, first/remark gone."""
    shown = {}
    for key, item in record.body.get("data", {}).items():
        if key in TEMPLATE_HIDDEN_FIELDS:
            continue
        value = str(item.get("value", ""))
        if len(value) > TEMPLATE_FIELD_SHOWN_CHARS:
            value = value[:TEMPLATE_FIELD_SHOWN_CHARS] + "…"
        shown[key] = value
    return shown


def _scene_key(action: str, scene: dict[str, Any]) -> str:
    if action.endswith("STR_SCENE"):
        scene_str = scene.get("scene_str")
        if not isinstance(scene_str, str) or not 1 <= len(scene_str) <= 64:
            raise Answer(40097, "invalid scene_str")
        return "s:" + scene_str
    scene_id = scene.get("scene_id")
    highest = QR_MAX_PERMANENT_ID if action == "QR_LIMIT_SCENE" else 2**32 - 1
    if not isinstance(scene_id, int) or not 1 <= scene_id <= highest:
        raise Answer(40097, "invalid scene_id")
    return f"i:{scene_id}"


def _ticket(scene_key: str, salt: str) -> str:
    return "gQ" + hashlib.sha256(f"{scene_key}|{salt}".encode()).hexdigest()[:40]


def _qr_url(ticket: str) -> str:
    return f"http://weixin.qq.com/q/{ticket[-22:]}"


def _bytes(value: Any) -> int:
    return len(value.encode("utf-8")) if isinstance(value, str) else 0


def _paths(path_or_kind: str) -> tuple[str, ...]:
    if path_or_kind in KIND_PATHS:
        return KIND_PATHS[path_or_kind]
    return ("/" + path_or_kind.lstrip("/"),)


def _take(queues: dict[str, deque[Any]], path: str) -> Any:
    queue = queues.get(path)
    return queue.popleft() if queue else None


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.method != "POST":
        return {}
    raw = await request.read()
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        raise Answer(47001) from None
    if not isinstance(data, dict):
        raise Answer(47001)
    return data


async def _control_body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(data, dict) or "path" not in data:
        raise web.HTTPBadRequest(text="body needs a path")
    return data


async def read_records(
    base_url: str, kind: str = "", *, session: aiohttp.ClientSession | None = None
) -> list[Record]:
    """Fetch the records of a stand-in running in another process (all, or one kind sent)."""
    params = {"kind": kind, "sent": "1"} if kind else {}
    own = session is None
    client = session or aiohttp.ClientSession()
    try:
        url = base_url.rstrip("/") + CONTROL_PREFIX + "/records"
        async with client.get(url, params=params) as response:
            response.raise_for_status()
            data = await response.json()
    finally:
        if own:
            await client.close()
    return [Record.from_json(item) for item in data["records"]]


STANDIN = web.AppKey("standin", StandIn)


def run_beside(app: web.Application, settings: Settings) -> None:
    """Run a stand-in on the port of `settings.api_base_url` for as long as `app` runs."""
    parts = urlsplit(settings.api_base_url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        log.warning("api stand-in not started: api_base_url is not on this machine")
        return
    stand_in = StandIn(
        app_id=settings.app_id,
        app_secret=settings.app_secret,
        host=parts.hostname,
        port=parts.port or 80,
    )
    app[STANDIN] = stand_in

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        await stand_in.start()
        yield
        await stand_in.stop()

    # First in, last out: replies still being sent at shutdown reach a running stand-in.
    app.cleanup_ctx.insert(0, lifetime)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add `python -m bot standin`."""
    parser = sub.add_parser(
        "standin",
        help="run the WeChat API stand-in (settings from -c, else config/dev.toml)",
    )
    parser.add_argument("--host", help="address to listen on (default: api_base_url's host)")
    parser.add_argument("--port", type=int, help="port to listen on (default: api_base_url's)")
    # dev=True makes the CLI read config/dev.toml when no -c is given.
    parser.set_defaults(run=_run, dev=True)


def _run(settings: Settings, args: argparse.Namespace) -> int:
    parts = urlsplit(settings.api_base_url)
    stand_in = StandIn(
        app_id=settings.app_id,
        app_secret=settings.app_secret,
        host=args.host or parts.hostname or "127.0.0.1",
        port=args.port if args.port is not None else (parts.port or 8081),
    )
    asyncio.run(_serve_until_stopped(stand_in))
    return 0


async def _serve_until_stopped(stand_in: StandIn) -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    await stand_in.start()
    try:
        await stopped.wait()
    finally:
        await stand_in.stop()
        log.info("api stand-in stopped")
