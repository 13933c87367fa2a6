"""在线咨询: answers from the FAQ in config/faq.toml, and the hand-over to a human agent."""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.dispatcher import Context, Reply, Router, is_number, normalize
from bot.texts import echo
from config.menu import entries, words_of
from config.settings import CONFIG_DIR
from handlers.branches import NEARBY_WORDS
from handlers.hall_info import (
    SECTION_WORDS,
    claim_pattern,
    hall_status,
    main_hall,
    menu_words_except,
)
from models.catalogue import Words, overlap

# A question is matched on its first characters only; no FAQ question is longer.
MAX_QUESTION_CHARS = 200
log = logging.getLogger(__name__)
router = Router("consult")

FAQ_FILE = CONFIG_DIR / "faq.toml"
ASK_STATE = "consult:ask"
# What a citizen types to reach a person; "人工" anywhere in the words is enough.
AGENT_MARK = "人工"
AGENT_WORDS = frozenset({"客服", "在线客服", "找客服", "联系客服", "转客服", "客服在吗"})
# After hours, these still hand over: the chat waits in the agents' queue until they are back.
LEAVE_MESSAGE_WORDS = frozenset({"留言", "我要留言", "仍要留言", "留言给客服", "仍要转人工"})

# Scores run from 0 to 1. An answer needs ANSWER_AT; below CLEAR_AT it must also stand out
# from the next one, or the citizen chooses from a list; below SUGGEST_AT nothing is offered.
ANSWER_AT = 0.6
CLEAR_AT = 0.8
SUGGEST_AT = 0.3
STAND_OUT = 0.05
MAX_OTHERS = 3
# An answer this long still leaves room for the question, related questions and next steps.
MAX_ANSWER_BYTES = 600
# A keyword typed with one character wrong, by the keyword's length.
_NEAR_SCORES = {3: 0.5, 4: 0.65, 5: 0.7}

# Words around a question that say nothing about which question it is.
_FILLERS = re.compile(
    "请问|你好|您好|我想|我要|想问|一下|怎么|如何|怎样|哪里|在哪|什么|可以|能不能|能否"
    "|是不是|有没有|需要|办理|吗|呢|啊|呀|吧|的|了"
)
_PUNCTUATION = re.compile(r"[\W_]+")


def squash(text: str) -> str:
    """Fold like the dispatcher does, then drop every space and punctuation mark."""
    return _PUNCTUATION.sub("", normalize(text))


def core(text: str) -> str:
    """Return the words that carry a question's meaning, without polite fillers."""
    squashed = squash(text)
    return _FILLERS.sub("", squashed) or squashed


def is_one_char_off(word: str, words: Words) -> bool:
    """Tell whether `words` hold `word` with one character wrong (a typo or a misheard word)."""
    if len(set(word) - words.chars) > 1:
        return False
    text, size = words.text, len(word)
    for start in range(len(text) - size + 1):
        window = text[start : start + size]
        if sum(a != b for a, b in zip(word, window, strict=True)) == 1:
            return True
    return False


@dataclass(frozen=True, slots=True)
class FaqEntry:
    id: str
    question: str
    answer: str
    keywords: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    phrases: tuple[Words, ...] = field(default=(), compare=False)

    @classmethod
    def from_toml(cls, item: dict[str, object]) -> FaqEntry:
        return cls.of(
            id=str(item.get("id", "")),
            question=str(item.get("question", "")),
            answer=str(item.get("answer", "")).strip(),
            keywords=_strings(item.get("keywords")),
            aliases=_strings(item.get("aliases")),
        )

    @classmethod
    def of(
        cls,
        id: str,
        question: str,
        answer: str,
        keywords: Iterable[str] = (),
        aliases: Iterable[str] = (),
    ) -> FaqEntry:
        """Build an entry with its keywords squashed and its phrases folded for matching."""
        aliases = tuple(aliases)
        cores = (core(text) for text in (question, *aliases))
        return cls(
            id=id,
            question=question,
            answer=answer,
            keywords=tuple(squash(k) for k in keywords),
            aliases=aliases,
            phrases=tuple(Words.of(c) for c in cores if c),
        )

    def score(self, squashed: Words, cored: Words) -> float:
        """Return how well typed words (squashed, and without fillers) ask this question."""
        if squashed.text in self.keywords or any(cored.text == p.text for p in self.phrases):
            return 1.0
        found = [len(k) for k in self.keywords if k in squashed.text]
        score = 0.8 + 0.02 * min(max(found), 5) if found else 0.0
        for phrase in self.phrases:
            if len(phrase.text) >= 2 and phrase.text in cored.text:
                score = max(score, 0.8)
            elif len(cored.text) >= 2 and cored.text in phrase.text:
                score = max(score, 0.7)
            score = max(score, 0.75 * overlap(cored, phrase))
        if score < ANSWER_AT:
            near = [len(k) for k in self.keywords if len(k) >= 3 and is_one_char_off(k, squashed)]
            # Two right characters of three prove little; four of five are a clear typo.
            score = max(score, _NEAR_SCORES[min(max(near), 5)] if near else 0.0)
        return score


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


@dataclass(frozen=True, slots=True)
class Lookup:
    """The entry that answers typed words, if one does, and others worth offering."""

    answer: FaqEntry | None
    others: list[FaqEntry]


class Faq:
    """The questions and answers of config/faq.toml, and how typed words find them."""

    def __init__(self, items: Sequence[FaqEntry], popular: Iterable[str] = ()) -> None:
        self.entries = list(items)
        self.by_id = {entry.id: entry for entry in self.entries}
        self.popular_ids = list(popular)
        self.popular = [self.by_id[i] for i in self.popular_ids if i in self.by_id]

    @classmethod
    def load(cls, path: Path = FAQ_FILE) -> Faq:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        items = [FaqEntry.from_toml(item) for item in data.get("faq", [])]
        return cls(items, _strings(data.get("popular")))

    @property
    def keywords(self) -> list[str]:
        return [k for entry in self.entries for k in entry.keywords]

    def lookup(self, text: str) -> Lookup:
        """Find the answer to typed words, or the closest questions when none is clear."""
        # Matching is quadratic in the length: 46 KB of text once held the process for seconds.
        text = text[:MAX_QUESTION_CHARS]
        squashed = squash(text)
        if not squashed:
            return Lookup(None, [])
        typed, cored = Words.of(squashed), Words.of(core(text))
        scored = [(entry.score(typed, cored), entry) for entry in self.entries]
        hits = sorted((pair for pair in scored if pair[0] >= SUGGEST_AT), key=lambda p: -p[0])
        if not hits:
            return Lookup(None, [])
        best, rest = hits[0], hits[1:]
        is_clear = best[0] >= CLEAR_AT or not rest or best[0] - rest[0][0] >= STAND_OUT
        if best[0] >= ANSWER_AT and is_clear:
            return Lookup(best[1], [entry for _, entry in rest[:MAX_OTHERS]])
        return Lookup(None, [entry for _, entry in hits[:MAX_OTHERS]])


def reserved_words() -> set[str]:
    """Return the words FAQ keywords must leave alone: other services' menu words, "人工"."""
    return menu_words_except("CONSULT") | {AGENT_MARK}


def check_faq(faq: Faq, reserved: set[str]) -> list[str]:
    """Return one readable line for each entry that breaks the rules at the top of faq.toml."""
    problems: list[str] = []
    owner: dict[str, str] = {}
    if len(faq.by_id) != len(faq.entries):
        problems.append("two entries share an id")
    for entry in faq.entries:
        where = f"faq {entry.id or '?'}"
        if not (entry.id and entry.question and entry.answer):
            problems.append(f"{where}: id, question and answer are required")
        if not (entry.keywords or entry.aliases):
            problems.append(f"{where}: needs keywords or aliases")
        if len(entry.answer.encode("utf-8")) > MAX_ANSWER_BYTES:
            problems.append(f"{where}: answer is longer than {MAX_ANSWER_BYTES} bytes")
        for keyword in entry.keywords:
            if keyword in owner:
                problems.append(f"{where}: keyword {keyword!r} belongs to {owner[keyword]}")
            owner[keyword] = entry.id
            taken = sorted(w for w in reserved if w in keyword)
            if taken:
                problems.append(f"{where}: keyword {keyword!r} holds menu word {taken[0]!r}")
    problems.extend(
        f"popular {i!r} is not an entry" for i in faq.popular_ids if i not in faq.by_id
    )
    return problems


def load_checked_faq(path: Path = FAQ_FILE) -> Faq:
    """Load the FAQ and refuse to start with one that would answer for other services."""
    faq = Faq.load(path)
    problems = check_faq(faq, reserved_words())
    if problems:
        raise ValueError(f"{path.name}:\n" + "\n".join(f"  - {p}" for p in problems))
    return faq


def wants_agent(words: str) -> bool:
    return AGENT_MARK in words or squash(words) in AGENT_WORDS


def words_elsewhere() -> dict[str, str]:
    """Return the exact words other services answer, each with its menu entry's name."""
    found = {
        normalize(word): e.name
        for key, e in entries().items()
        if key != "CONSULT"
        for word in e.words
    }
    found.update((w, entries()["HALL_INFO"].name) for ws in SECTION_WORDS.values() for w in ws)
    found.update((w, entries()["BRANCHES"].name) for w in NEARBY_WORDS)
    return found


FAQ = load_checked_faq()
# Inside 在线咨询 these words reach the FAQ, not their service; an unanswered one is pointed on.
ELSEWHERE = words_elsewhere()


async def _choices(ctx: Context, others: list[FaqEntry]) -> None:
    await ctx.dialog.go(ASK_STATE, choices=[entry.id for entry in others])


async def _answer(ctx: Context, entry: FaqEntry, others: list[FaqEntry]) -> Reply:
    # Related questions are picked by number, which only the consult dialog understands.
    is_in_consult = ctx.dialog.state == ASK_STATE
    log.debug("faq answered id=%s in_consult=%s", entry.id, is_in_consult)
    if is_in_consult:
        await _choices(ctx, others)
    else:
        others = []
    return ctx.reply("consult/answer.j2", entry=entry, others=others, is_in_consult=is_in_consult)


@router.text(pattern=claim_pattern(FAQ.keywords, reserved_words()))
async def answer_typed_question(ctx: Context) -> Reply:
    """A question typed anywhere that names an FAQ keyword gets its answer at once."""
    found = FAQ.lookup(ctx.words)
    if found.answer is None:
        return await _open(ctx)
    return await _answer(ctx, found.answer, found.others)


@router.menu("CONSULT")
async def open_consult(ctx: Context) -> Reply:
    """Tapping 在线咨询 opens a dialog: type a question, or pick a popular one by number."""
    return await _open(ctx)


async def _open(ctx: Context) -> Reply:
    hall = await main_hall()
    await ctx.dialog.start(ASK_STATE, choices=[entry.id for entry in FAQ.popular])
    status = await hall_status(hall, ctx.services.local_now())
    return ctx.reply("consult/intro.j2", popular=FAQ.popular, hall=hall, status=status)


@router.text(*words_of("CONSULT"), "转人工")
async def ask_for_help(ctx: Context) -> Reply:
    """Hand "人工" to an agent; answer what follows "咨询", or open the dialog."""
    if wants_agent(ctx.words):
        return await hand_over(ctx)
    found = FAQ.lookup(ctx.words)
    if found.answer is None:
        return await _open(ctx)
    await ctx.dialog.start(ASK_STATE)
    return await _answer(ctx, found.answer, found.others)


@router.dialog(ASK_STATE)
async def answer_in_consult(ctx: Context) -> Reply:
    """Inside 在线咨询 anything typed is looked up; no answer offers a human agent."""
    words = ctx.words
    if is_number(words) and len(words) <= 2:
        return await _pick(ctx, int(words))
    if wants_agent(words):
        return await hand_over(ctx)
    if words in LEAVE_MESSAGE_WORDS:
        return await hand_over(ctx, is_anyway=True)
    found = FAQ.lookup(words)
    if found.answer is not None:
        return await _answer(ctx, found.answer, found.others)
    if words in ELSEWHERE:
        await ctx.dialog.finish()
        return ctx.reply("consult/elsewhere.j2", asked=echo(words), name=ELSEWHERE[words])
    await _choices(ctx, found.others)
    if found.others:
        return ctx.reply("consult/suggest.j2", others=found.others, asked=echo(words))
    hall = await main_hall()
    status = await hall_status(hall, ctx.services.local_now())
    return ctx.reply("consult/no_match.j2", asked=echo(words), hall=hall, status=status)


async def _pick(ctx: Context, number: int) -> Reply:
    choices = [i for i in ctx.dialog.data.get("choices") or [] if i in FAQ.by_id]
    if not 1 <= number <= len(choices):
        await ctx.dialog.go(ASK_STATE)
        return ctx.reply("consult/bad_choice.j2", count=len(choices))
    entry = FAQ.by_id[choices[number - 1]]
    found = FAQ.lookup(entry.question)
    others = [other for other in found.others if other.id != entry.id]
    return await _answer(ctx, entry, others)


async def hand_over(ctx: Context, *, is_anyway: bool = False) -> Reply:
    """Hand the chat to an agent while the hall is open; after hours, say when and keep a way."""
    hall = await main_hall()
    status = await hall_status(hall, ctx.services.local_now())
    if status.is_open or is_anyway:
        await ctx.dialog.finish()
        log.debug("chat handed to agents is_open=%s", status.is_open)
        told = ctx.reply("consult/handed_over.j2", is_open=status.is_open, hall=hall)
        return Reply(is_transfer=True, then_text=told.text)
    await ctx.dialog.start(ASK_STATE, choices=[])
    return ctx.reply("consult/after_hours.j2", hall=hall, status=status)
