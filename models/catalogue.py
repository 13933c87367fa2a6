"""The guide's catalogue: items loaded from config/catalogue.toml and how typed words find them."""

from __future__ import annotations

import logging
import re
import time
import tomllib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tortoise import fields
from tortoise.models import Model

from config.settings import CONFIG_DIR
from models.hall import Category

log = logging.getLogger(__name__)

CATALOGUE_FILE = CONFIG_DIR / "catalogue.toml"
HALLS_FILE = CONFIG_DIR / "halls.toml"
REQUIRED = (
    "code",
    "name",
    "unit",
    "category",
    "topic",
    "conditions",
    "legal_limit",
    "promised_limit",
    "fee",
)
LISTS = ("aliases", "materials", "steps")
# Search results are read from the database at most this often by one process; a seed in
# this process clears them at once, one in another process is seen within this time.
INDEX_TTL_S = 60.0

# Scores: typed words equal to an item's name or alias; one of its aliases inside a sentence
# (plus its length); the typed words inside an alias (plus their length); the item's topic.
EXACT = 100.0
ALIAS_IN_WORDS = 60.0
WORDS_IN_ALIAS = 40.0
TOPIC = 38.0
# Characters in common (0-1, see `overlap`) count this much, and below MIN_OVERLAP not at all.
OVERLAP_WEIGHT = 45.0
MIN_OVERLAP = 0.5
# An alias inside a sentence names its item plainly when no other item scores this much.
CLEAR_BELOW = 50.0

# Words around a question that say nothing about which item it is.
_FILLERS = re.compile(
    "请问|你好|您好|我想|我要|想要|想问|一下|怎么办理|如何办理|怎样办理|怎么办|怎么|如何|怎样"
    "|哪里|在哪|什么|哪些|可以|能不能|能否|是不是|有没有|需要|要|办理|吗|呢|啊|呀|吧|的|了"
    "|材料|资料|流程|步骤|条件|手续|费用|收费|多少钱|多久|时限|几天|带|所需|指南|事项"
)
# A leading verb that the aliases rarely carry: "办执照" looks for "执照".
_LEADING_VERB = re.compile("^(?:办|申请|申办|咨询)")
_PUNCTUATION = re.compile(r"[\W_]+")


class CatalogueItem(Model):
    """An item a citizen can get done: its unit, window category, conditions and materials."""

    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=64, unique=True)
    name = fields.CharField(max_length=100)
    unit = fields.CharField(max_length=64)
    category: fields.ForeignKeyRelation[Category] = fields.ForeignKeyField(
        "models.Category", related_name="items", on_delete=fields.CASCADE
    )
    # The group inside the category, e.g. 社保 or 不动产.
    topic = fields.CharField(max_length=32, default="")
    aliases: Any = fields.JSONField(default=list)
    conditions = fields.TextField(default="")
    materials: Any = fields.JSONField(default=list)
    steps: Any = fields.JSONField(default=list)
    legal_limit = fields.CharField(max_length=64, default="")
    promised_limit = fields.CharField(max_length=100, default="")
    fee = fields.CharField(max_length=100, default="")
    # Where the item can be done online; empty when only at a window.
    online_via = fields.CharField(max_length=100, default="")
    is_self_service = fields.BooleanField(default=False)
    sort = fields.IntField(default=0)

    category_id: int

    class Meta:
        table = "catalogue_item"
        ordering = ("sort", "id")

    @property
    def is_online(self) -> bool:
        return bool(self.online_via)


# Loading and checking config/catalogue.toml.


def load_items(path: Path = CATALOGUE_FILE) -> list[dict[str, Any]]:
    """Read the items of a catalogue file and refuse one that breaks the rules at its top."""
    items = list(tomllib.loads(path.read_text(encoding="utf-8")).get("items", []))
    halls = tomllib.loads(HALLS_FILE.read_text(encoding="utf-8"))
    categories = {c["code"] for c in halls.get("categories", [])}
    units = {
        u for hall in halls.get("halls", []) for u in hall.get("details", {}).get("units", [])
    }
    problems = check_items(items, categories, units)
    if problems:
        raise ValueError(f"{path.name}:\n" + "\n".join(f"  - {p}" for p in problems))
    return items


def check_items(
    items: Sequence[dict[str, Any]], categories: set[str], units: set[str]
) -> list[str]:
    """Return one readable line for each item that is incomplete or names what does not exist."""
    problems = []
    seen: set[str] = set()
    for index, item in enumerate(items, 1):
        where = f"item {index} {item.get('code', '?')}"
        missing = [k for k in REQUIRED if not str(item.get(k, "")).strip()]
        missing += [k for k in LISTS if not _is_text_list(item.get(k))]
        if missing:
            problems.append(f"{where}: {', '.join(missing)} missing or empty")
        if item.get("code") in seen:
            problems.append(f"{where}: code is used twice")
        seen.add(str(item.get("code")))
        if item.get("category") not in categories:
            problems.append(f"{where}: category {item.get('category')!r} is not in halls.toml")
        if units and item.get("unit") not in units:
            problems.append(f"{where}: unit {item.get('unit')!r} is not stationed in a hall")
        if not isinstance(item.get("is_self_service", False), bool):
            problems.append(f"{where}: is_self_service must be true or false")
    return problems


def _is_text_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


async def seed_catalogue(path: Path = CATALOGUE_FILE) -> int:
    """Make the catalogue table hold exactly the items of `path`; return how many there are."""
    items = load_items(path)
    category_ids = dict(await Category.all().values_list("code", "id"))
    existing = {item.code: item for item in await CatalogueItem.all()}
    new = []
    for sort, raw in enumerate(items):
        values = _row(raw, sort, category_ids[raw["category"]])
        found = existing.pop(raw["code"], None)
        if found is None:
            new.append(CatalogueItem(code=raw["code"], **values))
        elif any(getattr(found, k) != v for k, v in values.items()):
            await CatalogueItem.filter(id=found.id).update(**values)
    if new:
        await CatalogueItem.bulk_create(new)
    if existing:
        await CatalogueItem.filter(code__in=list(existing)).delete()
    forget_index()
    log.info("catalogue seeded items=%d new=%d removed=%d", len(items), len(new), len(existing))
    return len(items)


def _row(raw: dict[str, Any], sort: int, category_id: int) -> dict[str, Any]:
    text = ("name", "unit", "topic", "conditions", "legal_limit", "promised_limit", "fee")
    row: dict[str, Any] = {k: str(raw.get(k, "")).strip() for k in text}
    row.update({k: [str(v).strip() for v in raw.get(k, [])] for k in LISTS})
    row.update(
        online_via=str(raw.get("online_via", "")).strip(),
        is_self_service=bool(raw.get("is_self_service", False)),
        sort=sort,
        category_id=category_id,
    )
    return row


# Search.


def squash(text: str) -> str:
    """Fold typed words for comparing: width, case, and no spaces or punctuation at all."""
    return _PUNCTUATION.sub("", unicodedata.normalize("NFKC", text).lower())


def core(squashed: str) -> str:
    """Return the words that name the item, without polite fillers and question words."""
    return _FILLERS.sub("", squashed)


def _dice(a: frozenset[str], b: frozenset[str]) -> float:
    return 2 * len(a & b) / (len(a) + len(b)) if a and b else 0.0


def _pairs(text: str) -> frozenset[str]:
    return frozenset(text[i : i + 2] for i in range(len(text) - 1))


def overlap(a: Words, b: Words) -> float:
    """Return how much two texts share, 0 to 1: their characters and their characters' order."""
    return (_dice(a.chars, b.chars) + _dice(a.pairs, b.pairs)) / 2


@dataclass(frozen=True, slots=True)
class Words:
    """Folded words with the character sets that `overlap` compares, computed once."""

    text: str
    chars: frozenset[str]
    pairs: frozenset[str]

    @classmethod
    def of(cls, text: str) -> Words:
        return cls(text, frozenset(text), _pairs(text))


@dataclass(frozen=True, slots=True)
class Entry:
    """An item as search sees it: its id, and its name and aliases folded."""

    id: int
    name: str
    category_id: int
    terms: tuple[str, ...]
    topic: str
    words: tuple[Words, ...]
    # Every character of its terms and topic: words sharing none cannot score.
    chars: frozenset[str]

    @classmethod
    def of(cls, id: int, name: str, aliases: Iterable[str], category_id: int, topic: str) -> Entry:
        terms = tuple(dict.fromkeys(t for t in (squash(name), *map(squash, aliases)) if t))
        words = tuple(Words.of(t) for t in terms)
        chars = frozenset(squash(topic)).union(*(w.chars for w in words))
        return cls(id, name, category_id, terms, squash(topic), words, chars)


@dataclass(frozen=True, slots=True)
class Hit:
    entry: Entry
    score: float


@dataclass(frozen=True, slots=True)
class Query:
    """Typed words in the forms the scores compare."""

    squashed: str
    core: str
    bare: str
    cored: Words
    chars: frozenset[str]

    @classmethod
    def of(cls, words: str) -> Query:
        squashed = squash(words)
        cored = core(squashed) or squashed
        bare = _LEADING_VERB.sub("", cored) or cored
        return cls(squashed, cored, bare, Words.of(cored), frozenset(squashed))


def score(entry: Entry, query: Query) -> float:
    """Return how well typed words name an item; 0 when they do not."""
    if query.chars.isdisjoint(entry.chars):
        return 0.0
    terms = entry.terms
    if query.squashed in terms or query.core in terms:
        return EXACT
    best = 0.0
    inside = [len(t) for t in terms if len(t) >= 2 and t in query.squashed]
    if inside:
        best = ALIAS_IN_WORDS + min(max(inside), 10)
    for fragment in {query.core, query.bare}:
        if len(fragment) >= 2 and any(fragment in t for t in terms):
            best = max(best, WORDS_IN_ALIAS + min(len(fragment), 10))
    if len(entry.topic) >= 2 and (entry.topic == query.core or entry.topic in query.squashed):
        best = max(best, TOPIC)
    # With one character in common no pair of them is: the overlap stays below MIN_OVERLAP.
    is_near = len(query.cored.chars & entry.chars) >= 2
    if best < WORDS_IN_ALIAS and len(query.core) >= 2 and is_near:
        shared = max(overlap(query.cored, w) for w in entry.words)
        if shared >= MIN_OVERLAP:
            best = max(best, OVERLAP_WEIGHT * shared)
    return best


@dataclass(frozen=True, slots=True)
class Found:
    """What a search found, best first."""

    hits: list[Hit]

    @property
    def ids(self) -> list[int]:
        return [hit.entry.id for hit in self.hits]

    @property
    def clear(self) -> Entry | None:
        """Return the one item the words plainly name: their only hit, or a clear first."""
        if not self.hits:
            return None
        top = self.hits[0]
        if len(self.hits) == 1:
            return top.entry
        second = self.hits[1].score
        if top.score >= EXACT and second < EXACT:
            return top.entry
        return top.entry if top.score >= ALIAS_IN_WORDS and second < CLEAR_BELOW else None


def rank(entries: Iterable[Entry], words: str) -> Found:
    """Rank entries by how well typed words name them: alias hits first, then shared characters."""
    query = Query.of(words)
    if not query.squashed:
        return Found([])
    hits = [Hit(e, s) for e in entries if (s := score(e, query)) > 0]
    if any(hit.score >= WORDS_IN_ALIAS for hit in hits):
        # Words that name items need no look-alikes, which only share a few characters.
        hits = [hit for hit in hits if hit.score >= TOPIC]
    # sorted() keeps the catalogue's order among equal scores.
    return Found(sorted(hits, key=lambda hit: -hit.score))


_index: tuple[float, list[Entry]] | None = None


def forget_index() -> None:
    """Drop this process's copy of the search entries; the next search reads them again."""
    global _index
    _index = None


async def index() -> list[Entry]:
    """Return the search entries of every item, read from the database at most every minute."""
    global _index
    now = time.monotonic()
    if _index is not None and now - _index[0] < INDEX_TTL_S:
        return _index[1]
    rows = await CatalogueItem.all().values_list("id", "name", "aliases", "category_id", "topic")
    entries = [Entry.of(i, n, a or [], c, t) for i, n, a, c, t in rows]
    _index = (now, entries)
    return entries


async def search(words: str) -> Found:
    """Find the items typed words name, best first."""
    return rank(await index(), words)


async def in_category(category_id: int) -> list[int]:
    """Return the ids of a category's items, in catalogue order."""
    found = await CatalogueItem.filter(category_id=category_id).values_list("id", flat=True)
    return [int(i) for i in found]  # type: ignore[call-overload]


def alias_words(items: Iterable[dict[str, Any]]) -> list[str]:
    """Return every name and alias of the items, folded, longest first (for a typed-words rule)."""
    words = {squash(t) for item in items for t in (item["name"], *item.get("aliases", []))}
    return sorted((w for w in words if len(w) >= 2), key=lambda w: (-len(w), w))
