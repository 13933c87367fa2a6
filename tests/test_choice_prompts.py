"""Numbered choices are asked for one way: "1" alone for one option, a range for several."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import pytest
import time_machine

from bot.services import Services
from bot.texts import TEMPLATES_DIR, Texts
from handlers.consult import FAQ
from models import booking as bookings
from models.booking import BookingSlot
from models.booking_rules import booking_rules
from models.catalogue import CatalogueItem
from models.classroom import Activity
from models.hall import Category, Hall
from models.queue import Window, forget_calling_halls
from tests.conftest import WeChat
from tests.handlers.test_classroom import activity
from tests.models.test_application import NUMBER, imported, row
from tests.models.test_booking import frozen_at, local

# The one template that may write a range of numbers out.
CHOICE_MACRO = "_choice.j2"
# A range written by hand ("1 到 {{ count }}", "1-{{ n }}", "from 1 to {{ count }}"), or the
# one-option case decided again in a template of its own ({% if count == 1 %}).
_SPELLED = re.compile(r"1\s*(?:到|至|-|–|~|to|and)\s*\{\{|count\s*==\s*1")
ONE = {"zh": "请回复“1”", "en": 'Please reply with "1"'}


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    """Monday 2 March 2026, 10:00 in the hall: open, bookable, numbers taken."""
    with frozen_at(local(2026, 3, 2, 10)) as traveller:
        yield traveller


def assert_asks_for_1(text: str, language: str = "zh") -> None:
    assert ONE[language] in text, text
    assert not re.search(r"1\s*(?:到|-|to)\s*1\b", text), text


def test_no_template_but_the_choice_macro_spells_the_range() -> None:
    spelled = [
        f"{path.relative_to(TEMPLATES_DIR)}: {found.group(0)}"
        for path in sorted(TEMPLATES_DIR.rglob("*.j2"))
        if path.name != CHOICE_MACRO
        for found in _SPELLED.finditer(path.read_text(encoding="utf-8"))
    ]

    assert spelled == []


@pytest.mark.parametrize(
    ("language", "one", "four"),
    [
        ("zh", "回复“1”", "回复 1 到 4 之间的序号"),
        ("en", 'reply with "1"', "reply with a number from 1 to 4"),
    ],
)
def test_the_choice_macro_asks_for_1_alone_and_for_a_range_of_several(
    language: str, one: str, four: str
) -> None:
    macro = f"{language}/{CHOICE_MACRO}"
    source = '{% from "' + macro + '" import reply_choice %}[{{ reply_choice(n) }}]'
    template = Texts().env.from_string(source)

    assert (template.render(n=1), template.render(n=4)) == (f"[{one}]", f"[{four}]")


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("booking/choose_again.j2", {}),
        ("classroom/choose_again.j2", {}),
        ("consult/bad_choice.j2", {}),
        ("evaluation/choose_again.j2", {}),
        ("guide/bad_choice.j2", {"is_category": False}),
        ("postal/choose_again.j2", {}),
        ("progress/ask_again.j2", {}),
        ("queue/choose_again.j2", {}),
        ("reminders/notices_again.j2", {}),
    ],
)
def test_every_choice_prompt_asks_for_1_when_one_option_is_left(
    language: str, name: str, values: dict[str, object]
) -> None:
    texts = Texts()

    assert_asks_for_1(texts.render(name, language, count=1, **values), language)
    several = texts.render(name, language, count=3, **values)
    assert ("1 到 3" if language == "zh" else "1 to 3") in several


def test_a_day_taken_with_no_other_day_asks_for_no_other_day() -> None:
    values = {"category": "民生服务", "start": "09:00", "code": "A1B2C3"}

    one = Texts().render("booking/day_taken.j2", "zh", count=1, **values)
    three = Texts().render("booking/day_taken.j2", "zh", count=3, **values)

    assert "另选" not in one and "回复“1”" not in one and "我的预约" in one
    assert "请另选一天，回复 1 到 3 之间的序号" in three


# The services, walked as a citizen when their list holds one option.


async def test_one_activity_in_the_classroom_asks_for_1_not_1_to_1(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    await Activity.all().delete()  # the seeded ones
    await activity()
    await wechat.tap("CLASSROOM")

    assert_asks_for_1(await wechat.say("9"))


async def test_one_followed_application_asks_for_1_not_1_to_1(
    wechat: WeChat, services: Services
) -> None:
    await imported(services, row("received", 9))
    await wechat.say(f"{NUMBER} 8000")
    await wechat.tap("APPLICATION_PROGRESS")

    assert_asks_for_1(await wechat.say("9"))


async def test_one_popular_question_asks_for_1_not_1_to_1(
    wechat: WeChat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FAQ, "popular", FAQ.popular[:1])
    await wechat.tap("CONSULT")

    assert_asks_for_1(await wechat.say("9"))


async def test_one_category_in_the_guide_asks_for_1_not_1_to_1(wechat: WeChat) -> None:
    first = await CatalogueItem.all().order_by("id").first()
    assert first is not None
    await CatalogueItem.exclude(category_id=first.category_id).delete()
    await wechat.tap("GUIDE_SEARCH")

    assert_asks_for_1(await wechat.say("9"))


@pytest.fixture
async def one_place(db: str) -> AsyncIterator[None]:
    """Numbers are taken for one category at one hall only: the main hall's first."""
    main = await Hall.get(kind="main")
    await Window.exclude(hall_id=main.id).delete()
    categories = await main.categories.all().order_by("sort", "id")
    await main.categories.remove(*categories[1:])
    forget_calling_halls()
    yield
    forget_calling_halls()


async def test_one_place_to_take_a_number_asks_for_1_not_1_to_1(
    wechat: WeChat, clock: time_machine.Traveller, one_place: None
) -> None:
    listing = await wechat.tap("QUEUE_TAKE")
    assert "1. " in listing and "2. " not in listing, listing

    assert_asks_for_1(await wechat.say("9"))


async def test_one_day_and_one_slot_left_to_book_ask_for_1_not_1_to_1(
    wechat: WeChat, services: Services, clock: time_machine.Traveller
) -> None:
    hall, category = await Hall.get(kind="main"), await Category.get(code="livelihood")
    rules = booking_rules()
    offered = await bookings.offered_days(hall, category, services.local_now(), rules)
    for day in offered:
        for slot in day.slots[1:] if day is offered[0] else day.slots:
            await BookingSlot.update_or_create(
                {"capacity": slot.capacity, "booked": slot.capacity},
                hall=hall,
                category=category,
                local_day=day.day,
                start_min=slot.start_min,
            )
    listing = await wechat.tap("BOOKING")
    line = next(x for x in listing.split(hall.name, 1)[1].splitlines() if category.name in x)
    await wechat.say(line.split(".", 1)[0])

    assert_asks_for_1(await wechat.say("9"))  # one day left
    slots = await wechat.say("1")
    assert "1. " in slots and "2. " not in slots, slots
    assert_asks_for_1(await wechat.say("9"))  # one slot left that day
