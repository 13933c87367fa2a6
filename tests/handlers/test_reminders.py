"""提醒设置 in chat: the threshold the queue uses, the notices wanted, and the language."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine

from bot import keys, push
from bot.platform_sim import Platform
from bot.services import Services
from models import preferences, queue_flow
from models.citizen import Citizen
from models.notice import Notice
from models.preferences import OPTIONAL_NOTICES
from models.queue_rules import queue_rules
from tests.conftest import OPENID, WeChat
from tests.models.test_queue import MONDAY_10


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(MONDAY_10, tick=False) as traveller:
        yield traveller


async def test_settings_show_the_defaults(wechat: WeChat) -> None:
    reply = await wechat.tap("REMINDERS")

    assert "前面剩 3 人时提醒（默认）" in reply
    assert "快到号提醒开" in reply and "中文" in reply


async def test_threshold_is_the_one_the_queue_reads(wechat: WeChat) -> None:
    await wechat.tap("REMINDERS")
    asked = await wechat.say("1")
    set_to = await wechat.say("5")

    assert "1 到 10" in asked
    assert "前面剩 5 人时提醒您" in set_to
    assert (await Citizen.get(openid=OPENID)).near_ahead == 5
    assert await queue_flow.near_ahead(OPENID, queue_rules()) == 5


@pytest.mark.parametrize("typed", ["0", "11", "三"])
async def test_threshold_out_of_range_is_refused(wechat: WeChat, typed: str) -> None:
    await wechat.tap("REMINDERS")
    await wechat.say("1")

    reply = await wechat.say(typed)

    assert "1 到 10" in reply
    assert await queue_flow.near_ahead(OPENID, queue_rules()) == 3
    assert "前面剩 2 人" in await wechat.say("2")  # still asking: the next answer counts


async def test_threshold_typed_directly(wechat: WeChat) -> None:
    reply = await wechat.say("提醒4")

    assert "前面剩 4 人时提醒您" in reply
    assert "1 到 10" in await wechat.say("提醒 12")


async def test_turned_off_notice_is_not_sent(wechat: WeChat, services: Services) -> None:
    await wechat.tap("REMINDERS")
    listing = await wechat.say("2")
    index = OPTIONAL_NOTICES.index("classroom_reminder") + 1
    off = await wechat.say(str(index))

    assert f"{index}. 市民课堂提醒：开" in listing
    assert "已关闭“市民课堂提醒”" in off and f"{index}. 市民课堂提醒：关" in off
    values = {"activity": "讲座", "place": "二楼", "starts_at": "2026-03-05 14:00"}
    queued = await push.notify(
        services, kind="classroom_reminder", openid=OPENID, ref="classroom:1", values=values
    )
    notice = await Notice.get(ref="classroom:1")
    assert (queued, notice.status, notice.last_error) == (False, "skipped", "turned off")
    # A notice that answers the citizen's own request still goes out.
    called = {"number": "A001", "window": "1号窗口", "hall": "本厅", "called_at": "10:00"}
    assert await push.notify(
        services, kind="ticket_called", openid=OPENID, ref="ticket:1", values=called
    )

    on = await wechat.say(str(index))
    assert "已开启“市民课堂提醒”" in on
    assert (await Citizen.get(openid=OPENID)).muted_notices == []


async def test_english_switches_replies_and_notices(wechat: WeChat, services: Services) -> None:
    reply = await wechat.say("English")

    assert "English" in reply and "已切换" not in reply
    assert await services.redis.hget(keys.citizen_key(OPENID), "language") == "en"  # type: ignore[misc]
    assert (await Citizen.get(openid=OPENID)).language == "en"
    help_text = await wechat.say("help")
    assert "(book an appointment)" in help_text and "点击" not in help_text
    values = {"category": "民生服务", "window": "1号窗口", "finished_at": "10:00"}
    await push.notify(
        services, kind="service_rate_invite", openid=OPENID, ref="ticket:9", values=values
    )
    notice = await Notice.get(ref="ticket:9")
    assert notice.data["fields"]["thing4"].isascii()

    back = await wechat.say("中文")
    assert "已切换为中文" in back
    assert await services.redis.hget(keys.citizen_key(OPENID), "language") == "zh"  # type: ignore[misc]


async def test_english_typed_outside_the_settings_opens_no_settings_dialog(
    wechat: WeChat,
) -> None:
    """English answered with the settings and opened their dialog: the next 2, meant for the
    menu's 取号, listed the notice switches, and a 1 then turned "almost your turn" off."""
    switched = await wechat.say("English")
    assert "Switched to English" in switched and "Reply 1" not in switched

    assert await wechat.say("2") == await wechat.tap("QUEUE_TAKE")
    assert "已切换为中文" in await wechat.say("中文")
    assert await wechat.say("2") == await wechat.tap("QUEUE_TAKE")


async def lose_redis_data(services: Services, *openids: str) -> None:
    """What a Redis restarted without its data has lost of the citizens' cache."""
    await services.redis.delete(*map(keys.citizen_key, openids), keys.LANGUAGES_KEPT_KEY)


async def test_lost_language_cache_is_put_back(wechat: WeChat, services: Services) -> None:
    await wechat.say("English")
    await lose_redis_data(services, OPENID)

    reply = await wechat.tap("REMINDERS")

    assert "Reminders" in reply
    assert await services.redis.hget(keys.citizen_key(OPENID), "language") == "en"  # type: ignore[misc]


async def test_a_lost_language_cache_does_not_turn_any_reply_chinese(
    wechat: WeChat, services: Services
) -> None:
    """Only 提醒设置 put the cache back: every other reply came in Chinese until then."""
    await wechat.say("English")
    before = await wechat.say("help")
    await lose_redis_data(services, OPENID)

    assert await wechat.say("help") == before
    assert await services.redis.hget(keys.citizen_key(OPENID), "language") == "en"  # type: ignore[misc]


async def test_a_redis_restart_puts_every_chosen_language_back_at_once(
    wechat: WeChat, services: Services
) -> None:
    """The row was read per citizen on their next message: in a rush, one read per take."""
    other = WeChat(wechat.client, wechat.platform, openid="oTEST0000000000000000000002")
    await wechat.say("English")
    await other.say("English")
    await lose_redis_data(services, OPENID, other.openid)

    assert "Reminders" in await wechat.tap("REMINDERS")

    assert await services.redis.hget(keys.citizen_key(other.openid), "language") == "en"  # type: ignore[misc]
    assert await services.redis.exists(keys.LANGUAGES_KEPT_KEY)


async def test_a_new_citizen_costs_no_language_read_while_languages_are_kept(
    wechat: WeChat, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    await wechat.say("帮助")  # the first message of the process's Redis puts them back
    loads: list[str] = []
    original = preferences.keep_languages

    async def counted(services: Services) -> dict[str, str]:
        loads.append("load")
        return await original(services)

    monkeypatch.setattr(preferences, "keep_languages", counted)
    newcomer = WeChat(wechat.client, wechat.platform, openid="oTEST0000000000000000000003")

    assert "点击" in await newcomer.say("帮助")
    assert loads == []
    await lose_redis_data(services)
    many = [
        WeChat(wechat.client, wechat.platform, openid=f"oTEST00000000000000000001{i:02d}")
        for i in range(6)
    ]
    replies = await asyncio.gather(*(citizen.say("帮助") for citizen in many))
    assert all("点击" in reply for reply in replies)
    assert loads == ["load"]  # one load for the messages that came while it ran


def is_english(text: str) -> bool:
    return "(book an appointment)" in text and "点击" not in text


def hold_the_load_after_its_read(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[asyncio.Event, asyncio.Event]:
    """Hold keep_languages once it has read the rows and before it writes to Redis."""
    read, go = asyncio.Event(), asyncio.Event()
    original = Citizen.exclude

    class Held:
        def __init__(self, query: Any) -> None:
            self.query = query

        async def values_list(self, *fields: str) -> Any:
            rows = await self.query.values_list(*fields)
            read.set()
            await go.wait()
            return rows

    monkeypatch.setattr(preferences.Citizen, "exclude", lambda **kw: Held(original(**kw)))
    return read, go


async def test_an_unfollow_during_a_load_does_not_bring_the_language_back(
    wechat: WeChat, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load wrote the English it had read into the hash the unsubscribe had just deleted:
    after following again the citizen got English, which their row no longer said."""
    await wechat.say("English")
    await services.redis.delete(keys.LANGUAGES_KEPT_KEY)  # the hashes kept, the mark not
    read, go = hold_the_load_after_its_read(monkeypatch)
    other = WeChat(wechat.client, wechat.platform, openid="oTEST0000000000000000000002")
    first = asyncio.ensure_future(other.say("帮助"))
    await read.wait()
    await wechat.send(Platform.event(OPENID, "unsubscribe"))  # its hash had a language
    go.set()
    await first
    await wechat.send(Platform.event(OPENID, "subscribe"))

    assert (await Citizen.get(openid=OPENID)).language == "zh"
    assert not is_english(await wechat.say("help"))


async def test_a_slow_load_holds_a_reply_for_a_second_at_most(
    wechat: WeChat, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message waited for the load however long the database took, before its budget."""
    from bot.app import LanguagesBack

    monkeypatch.setattr(LanguagesBack, "WAIT_S", 0.2)
    await wechat.say("English")
    await lose_redis_data(services, OPENID)
    read, go = hold_the_load_after_its_read(monkeypatch)

    reply = await asyncio.wait_for(wechat.say("帮助"), 2.0)

    assert read.is_set() and not go.is_set()
    assert "点击" in reply  # the default language, while the load is held
    go.set()


async def test_redis_losing_its_data_during_a_load_leaves_the_languages_unmarked(
    wechat: WeChat, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load marked the languages kept though the hashes it wrote first were gone."""
    from redis.asyncio.client import Pipeline

    other = WeChat(wechat.client, wechat.platform, openid="oTEST0000000000000000000002")
    await wechat.say("English")
    await other.say("English")
    await lose_redis_data(services, OPENID, other.openid)
    monkeypatch.setattr(preferences, "KEEP_CHUNK", 1)
    original = Pipeline.execute
    chunks: list[int] = []

    async def execute(self: Pipeline, raise_on_error: bool = True) -> Any:
        result = await original(self, raise_on_error)
        chunks.append(1)
        if len(chunks) == 1:
            await services.redis.flushdb()  # Redis restarts between the two chunks
        return result

    monkeypatch.setattr(Pipeline, "execute", execute)
    await preferences.keep_languages(services)
    monkeypatch.setattr(Pipeline, "execute", original)

    assert not await services.redis.exists(keys.LANGUAGES_KEPT_KEY)
    assert is_english(await wechat.say("help")) and is_english(await other.say("help"))


async def test_a_redis_error_during_a_load_keeps_what_it_read_for_the_reply(
    wechat: WeChat, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiting message was answered in Chinese though the load had read English."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    await wechat.say("English")
    await lose_redis_data(services, OPENID)
    original = services.redis.eval
    fails = [1]

    async def failing_eval(*args: Any, **kwargs: Any) -> Any:
        if fails:
            fails.pop()
            raise RedisConnectionError("down")
        return await original(*args, **kwargs)

    monkeypatch.setattr(services.redis, "eval", failing_eval)

    assert is_english(await wechat.say("help"))
    assert not fails and not await services.redis.exists(keys.LANGUAGES_KEPT_KEY)
    newcomer = WeChat(wechat.client, wechat.platform, openid="oTEST0000000000000000000003")
    await newcomer.say("帮助")  # a hash without a language: the next load marks them
    assert await services.redis.exists(keys.LANGUAGES_KEPT_KEY)


async def test_unfollow_forgets_the_choices(wechat: WeChat) -> None:
    await wechat.say("提醒6")
    await wechat.say("English")

    await wechat.send(Platform.event(OPENID, "unsubscribe"))

    citizen = await Citizen.get(openid=OPENID)
    assert (citizen.near_ahead, citizen.language, citizen.muted_notices) == (None, "zh", [])


async def test_leaving_the_settings(wechat: WeChat) -> None:
    await wechat.tap("REMINDERS")

    assert "设置已保存" in await wechat.say("完成")
    assert "没能理解" in await wechat.say("完成")


async def test_language_survives_a_blocked_notice(wechat: WeChat, services: Services) -> None:
    """A "user block" receipt once dropped the whole cache hash, and with it the language."""
    await wechat.say("English")

    await push.mark_not_following(services, OPENID)

    assert "(book an appointment)" in await wechat.say("help")
    assert await services.redis.hget(keys.citizen_key(OPENID), "following") is None  # type: ignore[misc]
