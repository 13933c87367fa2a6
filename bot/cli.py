"""`python -m bot`: serve the webhook, chat with it, keep the menu and the database."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence

from config.settings import CONFIG_DIR, Settings, SettingsError, load_settings

log = logging.getLogger("bot")
DEV_CONFIG = CONFIG_DIR / "dev.toml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    result: int = args.run(settings, args)
    return result


# Libraries whose debug lines carry query parameters (openids, phone numbers): never verbose.
QUIET_LOGGERS = ("tortoise", "aiosqlite", "asyncpg", "aiohttp.access", "arq.jobs")
OUR_LOGGERS = ("bot", "handlers", "models")


def configure_logging(verbose: bool) -> None:
    """Log our lifecycle at info (flow detail at debug with -v); keep libraries at info."""
    # What the format never shows, the records need not gather: the caller's file and line
    # (a walk up the stack on every line), thread, process. The logging HOWTO's optimizations.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)


def use_fast_loop() -> None:
    """Run asyncio on uvloop where it is installed: the same API, about twice as fast."""
    try:
        import uvloop
    except ImportError:  # not built for this platform: the standard loop serves as well
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _settings(args: argparse.Namespace) -> Settings:
    config = args.config or (DEV_CONFIG if getattr(args, "dev", False) else None)
    needs_wechat = not (args.run in (_db,) or (args.run is _menu and args.action != "sync"))
    return load_settings(config_file=config, needs_wechat=needs_wechat)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    parser.add_argument("-c", "--config", help="a TOML settings file (else BOT_CONFIG / env)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug lines")
    sub = parser.add_subparsers(title="commands")

    serve = sub.add_parser("serve", help="run the webhook")
    serve.add_argument("--host", help="address to listen on (default from settings)")
    serve.add_argument("--port", type=int, help="port to listen on (default from settings)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port (needs REDIS_URL)",
    )
    serve.add_argument(
        "--dev",
        action="store_true",
        help="use config/dev.toml, prepare the database and run the WeChat API stand-in",
    )
    serve.set_defaults(run=_serve)

    worker = sub.add_parser("worker", help="run the job worker that sends notices (REDIS_URL)")
    worker.add_argument("--burst", action="store_true", help="stop once the queue is empty")
    worker.set_defaults(run=_worker)

    db = sub.add_parser("db", help="create, migrate and seed the database")
    db.add_argument("action", choices=["create", "migrate", "seed"])
    db.set_defaults(run=_db)

    menu = sub.add_parser("menu", help="show, check or post the menu in config/menu.toml")
    menu.add_argument("action", choices=["show", "check", "sync"])
    menu.set_defaults(run=_menu)

    qr = sub.add_parser("qr", help="create each hall's permanent check-in QR code (API)")
    qr.set_defaults(run=_qr)

    from bot import admin_applications

    admin_applications.add_parser(sub)
    try:
        from bot import simulator
    except ImportError:
        pass
    else:
        simulator.add_parser(sub)
    try:
        from bot import standin
    except ImportError:
        pass
    else:
        standin.add_parser(sub)
    return parser


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.workers > 1 and settings.uses_redis_standin:
        print("--workers needs REDIS_URL: retries and dialogs must be shared", file=sys.stderr)
        return 2
    if args.dev:
        asyncio.run(prepare_database(settings))
    host, port = args.host or settings.host, args.port or settings.port
    log.info(
        "webhook listening url=http://%s:%d/wechat mode=%s workers=%d",
        host,
        port,
        settings.message_mode,
        args.workers,
    )
    if args.workers == 1:
        _run_server(settings, host, port, args.dev, reuse_port=False)
        return 0
    return _run_workers(settings, host, port, args.workers, args.verbose)


def _run_server(settings: Settings, host: str, port: int, dev: bool, reuse_port: bool) -> None:
    from aiohttp import web

    from bot.app import AccessLogger, create_app
    from models.db import SchemaNotReady

    use_fast_loop()
    app = create_app(settings)
    if dev:
        from bot import standin

        standin.run_beside(app, settings)
    try:
        web.run_app(
            app,
            host=host,
            port=port,
            print=None,
            access_log_class=AccessLogger,
            reuse_port=reuse_port,
        )
    except SchemaNotReady as exc:
        log.error("not starting: %s", exc)
        raise SystemExit(2) from None


def _serve_child(settings: Settings, host: str, port: int, verbose: bool) -> None:
    # A spawned process starts with no logging set up: without this its lines would be lost.
    configure_logging(verbose)
    _run_server(settings, host, port, False, reuse_port=True)


def _run_workers(settings: Settings, host: str, port: int, count: int, verbose: bool) -> int:
    """Run `count` server processes on one port (SO_REUSEPORT) until one stops or a signal."""
    import multiprocessing
    import signal

    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_serve_child, args=(settings, host, port, verbose), daemon=True)
        for _ in range(count)
    ]
    for worker in workers:
        worker.start()

    def stop(signum: int, frame: object) -> None:
        for worker in workers:
            worker.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in workers:
        worker.join()
    is_clean = all(w.exitcode in (0, -signal.SIGTERM) for w in workers)
    return 0 if is_clean else 1


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    if settings.uses_redis_standin:
        print(
            "worker needs REDIS_URL: on the stand-in the webhook process sends notices itself",
            file=sys.stderr,
        )
        return 2
    from bot import worker

    asyncio.run(worker.run(settings, burst=args.burst))
    return 0


async def prepare_database(settings: Settings) -> None:
    """Apply migrations, then seed halls and categories from config/."""
    from models.db import close_db, init_db, migrate, seed

    await migrate(settings.database_url)
    await init_db(settings.database_url)
    try:
        await seed()
    finally:
        await close_db()


def _db(settings: Settings, args: argparse.Namespace) -> int:
    from models.db import close_db, init_db, migrate, seed

    async def run() -> None:
        if args.action in ("create", "migrate"):
            await migrate(settings.database_url)
            print("migrations applied")
        if args.action in ("create", "seed"):
            await init_db(settings.database_url)
            try:
                counts = await seed()
            finally:
                await close_db()
            print(f"seeded {counts['categories']} categories and {counts['halls']} halls")

    from tortoise.exceptions import DBConnectionError

    try:
        asyncio.run(run())
    except (DBConnectionError, OSError) as exc:
        # A database that is down or not created yet: say so in a line, not a traceback.
        print(f"cannot reach the database of DATABASE_URL: {exc}", file=sys.stderr)
        print("create it first (PostgreSQL: createdb NAME), check it runs", file=sys.stderr)
        return 2
    return 0


def _menu(settings: Settings, args: argparse.Namespace) -> int:
    from config.menu import check_menu, load_menu, platform_payload

    menu = load_menu()
    problems = check_menu(menu)
    if args.action == "show":
        for button in menu["button"]:
            print(button["name"])
            for sub in button.get("sub_button", []):
                print(f"  {sub['name']:<8} {sub['type']:<17} {sub.get('key', sub.get('url', ''))}")
        return 0
    for problem in problems:
        print(f"menu: {problem}", file=sys.stderr)
    if problems:
        return 1
    if args.action == "check":
        print("menu ok: within the platform's limits")
        return 0
    asyncio.run(_sync_menu(settings, platform_payload(menu)))
    print("menu posted")
    return 0


def _qr(settings: Settings, args: argparse.Namespace) -> int:
    import aiohttp

    from bot.redis_conn import connect_redis
    from bot.wechat_api import WeChatAPI
    from handlers.checkin import create_codes
    from models.db import close_db, init_db

    async def run() -> list[dict[str, str]]:
        await init_db(settings.database_url)
        redis = connect_redis(settings.redis_url)
        try:
            async with aiohttp.ClientSession() as session:
                return await create_codes(WeChatAPI(settings, redis, session))
        finally:
            await redis.aclose()
            await close_db()

    for code in asyncio.run(run()):
        print(f"{code['hall']}\t{code['scene']}\tticket={code['ticket']}\turl={code['url']}")
        print(f"\timage: {code['image']}")
    return 0


async def _sync_menu(settings: Settings, payload: dict[str, object]) -> None:
    import aiohttp

    from bot.redis_conn import connect_redis
    from bot.wechat_api import WeChatAPI

    redis = connect_redis(settings.redis_url)
    async with aiohttp.ClientSession() as session:
        await WeChatAPI(settings, redis, session).create_menu(payload)
    await redis.aclose()
    log.debug("menu payload %s", json.dumps(payload, ensure_ascii=False))
