"""The morning rush: citizens take numbers through the webhook at once, windows then call them.

    DATABASE_URL=postgres://... REDIS_URL=redis://... python -m benchmarks.bench_rush
        [--citizens 1000] [--spread-s 1.0] [--servers 4] [--workers 2] [--calls 40]

Runs `--servers` webhook processes (`python -m bot serve`, one port each, requests spread
round-robin) and `--workers` job workers (`python -m bot worker`) on PostgreSQL and Redis, with
the WeChat API stand-in in this process. Prints duplicates and lost takes (both must be 0), the
takes' p50/p99 latency, and the time from each "call next" to every notice it causes (the
called holder's, and the one whose turn became near) reaching the stand-in.

The database is emptied of tickets, notices and citizens first: point it at a scratch one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from bot.platform_sim import Platform
from bot.standin import StandIn

ROOT = Path(__file__).resolve().parent.parent
TOKEN, APP_ID, APP_SECRET = "rushtoken", "wxrush00000000001", "rush-secret"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
# 工程建设 is served at the main hall only, so "取号 工程建设" takes a number in one message.
TAKE_WORDS = "取号 工程建设"
CATEGORY, PREFIX = "construction", "C"
NUMBER = re.compile(rf"您的号码：({PREFIX}\d{{3,}})")
# Extra windows of the main hall calling the rush's category, one staff token each.
RUSH_WINDOWS = tuple(f"R{i:02d}" for i in range(1, 9))
TABLES = ("ticket_event", "ticket", "number_counter", "notice", "notice_consent", "citizen")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def staff_tokens(windows: Sequence[str] = RUSH_WINDOWS) -> str:
    return ",".join(f"tok-{code.lower()}:{code}" for code in windows)


def window_headers(code: str) -> dict[str, str]:
    return {"Authorization": f"Bearer tok-{code.lower()}"}


def write_rules(path: Path, *, quota: int, windows: Sequence[str] = RUSH_WINDOWS) -> Path:
    """Write a queue rules file: the project's, a quota for the rush and the rush's windows."""
    from models.queue_rules import load_rules

    rules = load_rules()
    lines = ["[rules]", f"default_remote_quota = {rules.default_remote_quota}"]
    lines += [f"near_ahead_default = {rules.near_ahead_default}", ""]
    lines += ["[quotas.main]", f"{CATEGORY} = {quota}", ""]
    items = [dict(w) for w in rules.windows]
    items += [
        {"hall": "main", "code": c, "name": f"{c}窗口", "categories": [CATEGORY]} for c in windows
    ]
    for item in items:
        categories = ", ".join(f'"{c}"' for c in item["categories"])
        lines += ["[[windows]]", f'hall = "{item["hall"]}"', f'code = "{item["code"]}"']
        lines += [f'name = "{item["name"]}"', f"categories = [{categories}]", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


async def prepare_database(database_url: str) -> None:
    """Migrate, empty the queue's tables, seed (with $QUEUE_CONFIG's windows), open all day."""
    from tortoise import Tortoise

    from models.db import close_db, init_db, migrate, seed
    from models.hall import Hall

    await migrate(database_url)
    await init_db(database_url)
    try:
        conn = Tortoise.get_connection("default")
        await conn.execute_script(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        await seed()
        # The rush runs whenever the benchmark does: the main hall stays open all day.
        all_day = [{"days": [1, 2, 3, 4, 5, 6, 7], "open": "00:00", "close": "24:00"}]
        await Hall.filter(code="main").update(hours=all_day)
    finally:
        await close_db()


@dataclass
class Fleet:
    """Webhook and worker processes on one database and one Redis."""

    database_url: str
    redis_url: str
    api_base_url: str
    rules_file: Path
    servers: int = 4
    workers: int = 2
    mode: str = "safe"
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_files: list[IO[bytes]] = field(default_factory=list)
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rush-")))

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            WECHAT_TOKEN=TOKEN, WECHAT_APPID=APP_ID, WECHAT_APPSECRET=APP_SECRET,
            WECHAT_AES_KEY=AES_KEY, WECHAT_MODE=self.mode, DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url, WECHAT_API_BASE=self.api_base_url,
            STAFF_TOKENS=staff_tokens(), QUEUE_CONFIG=str(self.rules_file), PYTHONPATH=str(ROOT),
        )  # fmt: skip
        env.pop("BOT_CONFIG", None)
        return env

    @property
    def server_pids(self) -> list[int]:
        return [proc.pid for proc in self.procs[: self.servers]]

    @property
    def worker_pids(self) -> list[int]:
        return [proc.pid for proc in self.procs[self.servers :]]

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def _spawn(self, args: list[str], name: str) -> None:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115  # closed by stop()
        self.log_files.append(log)
        command = [sys.executable, "-m", "bot", *args]
        self.procs.append(
            subprocess.Popen(command, env=self.env(), cwd=ROOT, stdout=log, stderr=log)
        )

    async def start(self) -> None:
        for i in range(self.servers):
            port = free_port()
            self.ports.append(port)
            self._spawn(["serve", "--port", str(port)], f"server{i}")
        for i in range(self.workers):
            self._spawn(["worker"], f"worker{i}")
        try:
            await asyncio.gather(*(self._wait_up(i) for i in range(self.servers)))
        except BaseException:
            await self.stop()
            raise

    async def _wait_up(self, index: int, wait_s: float = 30.0) -> None:
        """Wait for a server's /healthz; a server that exited fails at once, with its log."""
        deadline = time.monotonic() + wait_s
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.procs[index].poll() is not None:
                    break
                try:
                    async with session.get(f"{self.urls[index]}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        log = (self.log_dir / f"server{index}.log").read_text(errors="replace")
        raise RuntimeError(f"server {self.urls[index]} did not start:\n{log[-1500:]}")

    async def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()
        for log in self.log_files:
            log.close()
        self.log_files.clear()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in self.log_dir.glob("*.log"))


@dataclass
class Take:
    openid: str
    latency_s: float = 0.0
    status: int = 0
    number: str | None = None
    text: str = ""


def rush_deliveries(platform: Platform, citizens: int) -> list[tuple[str, dict[str, str], bytes]]:
    """Sign and seal one take per citizen beforehand, so that the rush measures the server."""
    out = []
    for i in range(citizens):
        openid = f"oRUSH{i:023d}"
        delivery = platform.deliver(Platform.text(openid, TAKE_WORDS))
        out.append((openid, delivery.query, delivery.body))
    return out


class KeptAliveHTTP:
    """POST prepared requests over kept-alive HTTP/1.1 connections, a pool per server.

    The load generator shares the servers' two cores: aiohttp's client spent about 150 µs of
    CPU on each request, this about a third of that, so the rush measures the servers more
    and the generator less. Enough HTTP for the webhook's answers (a status, a Content-Length
    body), no more.
    """

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
        self._idle = {}
        self._open: list[asyncio.StreamWriter] = []

    @staticmethod
    def prepare(url: str, query: str, body: bytes) -> tuple[tuple[str, int], bytes]:
        """Return the server's address and the bytes of a POST of `body` to `url`?`query`."""
        parsed = urlsplit(url)
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
        head = (
            f"POST {parsed.path}?{query} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: text/xml\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return (host, port), head.encode() + body

    async def post(self, address: tuple[str, int], request: bytes) -> tuple[int, bytes]:
        """Send a prepared request; return the status and the body."""
        idle = self._idle.setdefault(address, [])
        if idle:
            reader, writer = idle.pop()
        else:
            reader, writer = await asyncio.open_connection(*address)
            self._open.append(writer)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines if ": " in line)
        if "content-length" not in headers:
            raise ConnectionError(f"an answer without a Content-Length: {status_line}")
        body = await reader.readexactly(int(headers["content-length"]))
        if headers.get("connection") != "close":
            idle.append((reader, writer))
        return int(status_line.split(" ", 2)[1]), body

    async def close(self) -> None:
        for writer in self._open:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in self._open), return_exceptions=True)


async def rush(
    urls: list[str], platform: Platform, citizens: int, spread_s: float
) -> tuple[list[Take], float]:
    """Send every citizen's take, evenly over `spread_s`; return the takes and the time taken."""
    client = KeptAliveHTTP()
    requests = [
        (openid, *client.prepare(urls[i % len(urls)] + "/wechat", urlencode(query), body))
        for i, (openid, query, body) in enumerate(rush_deliveries(platform, citizens))
    ]
    started = time.perf_counter()

    async def one(index: int) -> Take:
        openid, address, request = requests[index]
        await asyncio.sleep(max(0.0, started + index * spread_s / citizens - time.perf_counter()))
        take = Take(openid)
        sent = time.perf_counter()
        try:
            async with asyncio.timeout(30):
                take.status, reply = await client.post(address, request)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            take.text = type(exc).__name__
            return take
        take.latency_s = time.perf_counter() - sent
        take.text = reply.decode()
        return take

    try:
        takes = await asyncio.gather(*(one(i) for i in range(citizens)))
    finally:
        await client.close()
    elapsed_s = time.perf_counter() - started
    # Opened after the rush: the generator's decrypting would take CPU from the servers.
    for take in takes:
        opened = platform.open_reply(take.text) if take.status == 200 else None
        take.text = str((opened or {}).get("Content", take.text))
        found = NUMBER.search(take.text)
        take.number = found.group(1) if found else None
    return list(takes), elapsed_s


async def staff_post(
    session: aiohttp.ClientSession, url: str, path: str, window: str
) -> dict[str, Any]:
    async with session.post(f"{url}/api/staff{path}", headers=window_headers(window)) as response:
        body: dict[str, Any] = await response.json()
        if response.status != 200:
            raise RuntimeError(f"staff call {path} failed: {response.status} {body}")
        return body


@dataclass
class Call:
    """One "call next" and the notices it should cause."""

    sent_at: float
    called_openid: str
    near_openid: str | None


async def call_round(
    fleet: Fleet, calls: int, number_to_openid: dict[str, str], near_ahead: int, gap_s: float
) -> list[Call]:
    """Windows call in turn; each call makes one holder called and the one behind near."""
    in_order = sorted(number_to_openid, key=lambda n: int(n[len(PREFIX) :]))
    made: list[Call] = []
    async with aiohttp.ClientSession() as session:
        for i, code in enumerate(RUSH_WINDOWS):
            await staff_post(
                session, fleet.urls[i % len(fleet.urls)], f"/windows/{code}/open", code
            )
        holding: dict[str, int] = {}
        for i in range(calls):
            code = RUSH_WINDOWS[i % len(RUSH_WINDOWS)]
            url = fleet.urls[i % len(fleet.urls)]
            if code in holding:
                await staff_post(
                    session, url, f"/windows/{code}/tickets/{holding[code]}/finish", code
                )
            sent_at = time.time()
            body = await staff_post(session, url, f"/windows/{code}/call-next", code)
            ticket = body["ticket"]
            holding[code] = ticket["id"]
            # After i+1 calls, the holder with `near_ahead` people ahead is the next to be told.
            behind = i + 1 + near_ahead
            near = number_to_openid[in_order[behind]] if behind < len(in_order) else None
            made.append(Call(sent_at, number_to_openid[ticket["number"]], near))
            await asyncio.sleep(gap_s)
    return made


async def notice_latencies(
    standin: StandIn, calls: list[Call], wait_s: float = 10.0
) -> tuple[list[float], int]:
    """Return, per call, the time until its last notice reached the stand-in; and how many
    expected notices never came."""
    templates = {"called": "tmpl_ticket_called_0001", "near": "tmpl_queue_near_0001"}
    deadline = time.monotonic() + wait_s
    while True:
        arrived: dict[tuple[str, str], float] = {}
        for record in standin.sent("template"):
            key = (str(record.body["template_id"]), str(record.body["touser"]))
            arrived.setdefault(key, record.at)
        expected = []
        for call in calls:
            keys = [(templates["called"], call.called_openid)]
            if call.near_openid:
                keys.append((templates["near"], call.near_openid))
            expected.append((call, keys))
        missing = sum(1 for _, keys in expected for key in keys if key not in arrived)
        if not missing or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    latencies = []
    for call, keys in expected:
        times = [arrived[key] for key in keys if key in arrived]
        if len(times) == len(keys):
            latencies.append(max(times) - call.sent_at)
    return latencies, missing


async def issued_numbers(database_url: str) -> dict[str, str]:
    """Return the number each rush citizen holds, as the database has it."""
    from models.db import close_db, init_db
    from models.queue import Ticket

    await init_db(database_url)
    try:
        rows = await Ticket.filter(openid__startswith="oRUSH").values_list("openid", "number")
    finally:
        await close_db()
    return {str(openid): str(number) for openid, number in rows}


def cpu_s(pids: Sequence[int]) -> float:
    """Return the CPU seconds these processes have used so far."""
    total, ticks = 0.0, os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def busy_s() -> float:
    """Return the CPU seconds this machine has spent busy, all processes and cores together."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def named_pids(name: str) -> list[int]:
    """Return the processes of this machine with this command name (PostgreSQL, Redis)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if f"({name})" in stat.read_text().split(" ", 2)[1]:
                found.append(int(stat.parent.name))
        except (FileNotFoundError, IndexError, ProcessLookupError):
            continue
    return found


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


async def wait_sent(standin: StandIn, count: int, wait_s: float, kind: str = "template") -> float:
    started = time.monotonic()
    while True:
        if len(standin.sent(kind)) >= count or time.monotonic() - started > wait_s:
            return time.monotonic() - started
        await asyncio.sleep(0.05)


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--citizens", type=int, default=1000)
    parser.add_argument("--spread-s", type=float, default=1.0)
    parser.add_argument("--servers", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--call-gap-s", type=float, default=0.25)
    parser.add_argument("--mode", default="safe", choices=["plain", "compatible", "safe"])
    args = parser.parse_args(argv)
    database_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")) or not redis_url:
        parser.error("set DATABASE_URL (PostgreSQL) and REDIS_URL")

    rules_file = write_rules(Path(tempfile.mkdtemp(prefix="rush-")) / "queue.toml", quota=10**6)
    os.environ["QUEUE_CONFIG"] = str(rules_file)
    await prepare_database(database_url)
    import redis.asyncio as aioredis

    redis = aioredis.Redis.from_url(redis_url)
    await redis.flushdb()
    await redis.aclose()
    standin = StandIn(app_id=APP_ID, app_secret=APP_SECRET)
    await standin.start()
    fleet = Fleet(database_url, redis_url, standin.url, rules_file, args.servers, args.workers)
    fleet.mode = args.mode
    platform = Platform(TOKEN, APP_ID, AES_KEY, mode=args.mode)
    try:
        await fleet.start()
        return await _measure(fleet, standin, platform, args)
    finally:
        await fleet.stop()
        await standin.stop()


async def _measure(fleet: Fleet, standin: StandIn, platform: Platform, args: Any) -> int:
    # Warm every process's connections with a message that touches the database.
    warm = Platform(TOKEN, APP_ID, AES_KEY, mode=args.mode)
    async with aiohttp.ClientSession() as session:
        for i, url in enumerate(fleet.urls * 3):
            delivery = warm.deliver(Platform.text(f"oWARM{i:023d}", "排队进度"))
            async with session.post(url + "/wechat", params=delivery.query, data=delivery.body):
                pass

    groups = {
        "webhook": lambda: cpu_s(fleet.server_pids),
        "workers": lambda: cpu_s(fleet.worker_pids),
        "postgres": lambda: cpu_s(named_pids("postgres")),
        "redis": lambda: cpu_s(named_pids("redis-server")),
        "load_generator": time.process_time,
        "machine": busy_s,
    }
    before = {name: read() for name, read in groups.items()}
    takes, elapsed_s = await rush(fleet.urls, platform, args.citizens, args.spread_s)
    used = {name: read() - before[name] for name, read in groups.items()}
    late = [t for t in takes if not t.number]
    # A take past the reply budget is answered by a customer-service message: wait for those.
    await wait_sent(standin, len(late), 30.0, kind="custom")
    issued = await issued_numbers(fleet.database_url)
    numbers = [issued[t.openid] for t in takes if t.openid in issued]
    duplicates = len(numbers) - len(set(numbers))
    told = {r.body["touser"]: r.body["text"]["content"] for r in standin.sent("custom")}
    lost = sum(1 for t in late if not NUMBER.search(told.get(t.openid, "")))
    latencies_ms = [t.latency_s * 1000 for t in takes if t.status == 200]
    print(
        f"rush citizens={args.citizens} servers={args.servers} spread_s={args.spread_s} "
        f"elapsed_s={elapsed_s:.2f}"
    )
    print(
        f"  duplicates={duplicates} lost_takes={lost} tickets={len(numbers)} "
        f"answered_past_budget={len(late)}"
    )
    per_take_ms = 1000 / max(len(takes), 1)
    shares = " ".join(f"{name}={cpu * per_take_ms:.1f}" for name, cpu in used.items())
    print(f"  cpu_ms_per_take (while the rush ran) {shares} cores={os.cpu_count()}")
    if latencies_ms:
        print(
            f"  take latency p50_ms={statistics.median(latencies_ms):.1f} "
            f"p99_ms={percentile(latencies_ms, 0.99):.1f} max_ms={max(latencies_ms):.1f}"
        )
    drained_s = await wait_sent(standin, len(numbers), 60.0)
    print(f"  ticket_taken notices at the stand-in={len(standin.sent('template'))} "
          f"drained_after_s={drained_s:.2f}")  # fmt: skip

    number_to_openid = {number: openid for openid, number in issued.items()}
    from models.queue_rules import load_rules

    near_ahead = load_rules(fleet.rules_file).near_ahead_default
    calls = await call_round(fleet, args.calls, number_to_openid, near_ahead, args.call_gap_s)
    latencies, missing = await notice_latencies(standin, calls)
    if latencies:
        print(
            f"call next -> notices calls={len(calls)} missing={missing} "
            f"p50_ms={statistics.median(latencies) * 1000:.0f} "
            f"p99_ms={percentile(latencies, 0.99) * 1000:.0f} "
            f"max_ms={max(latencies) * 1000:.0f}"
        )
    return 0 if duplicates == 0 and lost == 0 and missing == 0 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
