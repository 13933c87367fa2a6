"""Load the webhook with signed text messages and menu taps, beside a bare aiohttp handler.

    python -m benchmarks.bench_webhook [--workers 1] [--seconds 10] [--mode safe] [--rounds 5]

Both servers get the same load from one generator at 32 connections on this machine, taking
turns: `--seconds` each, in `--rounds` slices. Each
request is a new message (its own MsgId), so none is answered from the retry cache. With
--workers > 1 the webhook needs REDIS_URL (the stand-in lives in one process).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bot.platform_sim import Platform

ROOT = Path(__file__).resolve().parent.parent
TOKEN, APP_ID = "benchtoken", "wxbench0000000001"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
BARE_REPLY = (
    "<xml><ToUserName><![CDATA[o]]></ToUserName><FromUserName><![CDATA[gh]]></FromUserName>"
    "<CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[hello]]></Content></xml>"
)
# "simple": the path every message takes (signature, AES, parse, one claim, a template, reply)
# with the help texts and one menu tap; "services": what citizens send most, some of it
# reading the database.
MIXES = {
    "simple": (["帮助", "你好", "营业时间表格下载", "hello"], ["HALL_INFO"]),
    "services": (
        ["帮助", "中心概况", "几点开门", "网点导航", "取号", "营业执照怎么办"],
        ["HALL_INFO", "BRANCHES", "CONSULT", "QUEUE_STATUS"],
    ),
}

BARE_SERVER = """
import sys
from aiohttp import web
from bot.cli import use_fast_loop
use_fast_loop()  # the same event loop as the webhook's
async def handle(request):
    await request.read()
    return web.Response(text=sys.argv[2], content_type="text/xml")
app = web.Application()
app.router.add_post("/wechat", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None,
            reuse_port=True)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(mode: str, database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        WECHAT_TOKEN=TOKEN,
        WECHAT_APPID=APP_ID,
        WECHAT_APPSECRET="bench",
        WECHAT_AES_KEY=AES_KEY,
        WECHAT_MODE=mode,
        DATABASE_URL=database_url,
        WECHAT_API_BASE="http://127.0.0.1:9",
        PYTHONPATH=str(ROOT),
    )
    env.pop("BOT_CONFIG", None)
    return env


def start_webhook(port: int, workers: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    subprocess.run(
        [sys.executable, "-m", "bot", "db", "create"],
        env=env,
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    command = [
        sys.executable,
        "-m",
        "bot",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    return subprocess.Popen(
        command,
        env=env,
        cwd=ROOT,
        stderr=open(os.path.join(tempfile.gettempdir(), "bench-webhook.log"), "w"),
    )


def start_bare(port: int, workers: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(port), BARE_REPLY], cwd=ROOT)
        for _ in range(workers)
    ]


async def wait_up(port: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.post(f"http://127.0.0.1:{port}/wechat") as response:
                    await response.read()
                    return
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start")


def make_requests(count: int, mode: str, mix: str) -> list[tuple[dict[str, str], bytes]]:
    platform = Platform(TOKEN, APP_ID, AES_KEY, mode=mode)
    words, menu_keys = MIXES[mix]
    # Events are known by openid + CreateTime: a run tag in the openid keeps a Redis that
    # still holds the last run's records from answering this run's taps as retries.
    run = int(time.time()) % 1_000_000
    out = []
    for i in range(count):
        openid = f"oBENCH{run:06d}{i % 500:015d}"
        if i % 3 == 2 and menu_keys:
            # An event's identity is openid + CreateTime + key: vary the time, or it is a retry.
            xml = Platform.event(
                openid,
                "CLICK",
                create_time=1_700_000_000 + i,
                EventKey=menu_keys[i % len(menu_keys)],
            )
        else:
            xml = Platform.text(openid, words[i % len(words)])
        delivery = platform.deliver(xml)
        out.append((delivery.query, delivery.body))
    return out


async def load(
    port: int, requests: list[tuple[dict[str, str], bytes]], seconds: float, connections: int
) -> tuple[int, float, list[float], int]:
    url = f"http://127.0.0.1:{port}/wechat"
    latencies: list[float] = []
    errors = 0
    index = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal index, errors
            while time.perf_counter() < deadline and index < len(requests):
                query, body = requests[index]
                index += 1
                started = time.perf_counter()
                async with session.post(url, params=query, data=body) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return len(latencies), elapsed, latencies, errors


def cpu_s(pids: list[int]) -> float:
    """Return the CPU seconds used so far by these processes and their children."""
    total, ticks = 0.0, os.sysconf("SC_CLK_TCK")
    todo = list(pids)
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except FileNotFoundError:
            continue
    return total


def summary(
    name: str, done: int, elapsed: float, latencies: list[float], errors: int, cpu_used_s: float
) -> float:
    ordered = sorted(latencies)
    rps = done / elapsed
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    print(
        f"{name:<8} requests={done:>6} errors={errors} rps={rps:8.0f} "
        f"p50_ms={p50:6.2f} p99_ms={p99:6.2f} server_cpu_us_per_req={cpu_used_s / done * 1e6:6.0f}"
    )
    return rps


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--mode", default="safe", choices=["plain", "compatible", "safe"])
    parser.add_argument("--mix", default="simple", choices=sorted(MIXES))
    parser.add_argument("--rounds", type=int, default=5, help="turns each server takes")
    args = parser.parse_args()
    if args.workers > 1 and not os.environ.get("REDIS_URL"):
        parser.error("--workers > 1 needs REDIS_URL")

    count = int(args.seconds * 8000) + 4000
    print(f"preparing {count} signed deliveries (mode={args.mode}) ...", flush=True)
    requests = make_requests(count, args.mode, args.mix)
    tmp = tempfile.mkdtemp(prefix="bench-")
    database_url = os.environ.get("DATABASE_URL", f"sqlite://{tmp}/bench.sqlite3")

    ports = {"bare": free_port(), "webhook": free_port()}
    procs = {
        "bare": start_bare(ports["bare"], args.workers),
        "webhook": [
            start_webhook(ports["webhook"], args.workers, server_env(args.mode, database_url))
        ],
    }
    try:
        for port in ports.values():
            await wait_up(port)
            await load(port, requests[:2000], 1.0, args.connections)  # warm up
        # The two take turns in short rounds, so that a machine whose speed drifts (a shared
        # host) slows both alike instead of whichever ran second.
        totals: dict[str, tuple[int, float, list[float], int, float]] = {
            name: (0, 0.0, [], 0, 0.0) for name in ports
        }
        offset = 2000
        slice_s = args.seconds / args.rounds
        for _ in range(args.rounds):
            for name, port in ports.items():
                pids = [proc.pid for proc in procs[name]]
                before = cpu_s(pids)
                # Each message reaches the webhook once (a repeat would be a retry); the bare
                # handler may see them again.
                given = requests[offset:] if name == "webhook" else requests[2000:]
                done, elapsed, latencies, errors = await load(
                    port, given, slice_s, args.connections
                )
                if name == "webhook":
                    offset += done
                t = totals[name]
                totals[name] = (
                    t[0] + done, t[1] + elapsed, t[2] + latencies, t[3] + errors,
                    t[4] + cpu_s(pids) - before,
                )  # fmt: skip
        results = {name: summary(name, *totals[name]) for name in ports}
    finally:
        for group in procs.values():
            for proc in group:
                proc.terminate()
                proc.wait()
    print(
        f"ratio webhook/bare = {results['webhook'] / results['bare']:.0%} "
        f"(workers={args.workers}, mode={args.mode}, mix={args.mix}, "
        f"connections={args.connections}, rounds={args.rounds})"
    )


if __name__ == "__main__":
    asyncio.run(main())
