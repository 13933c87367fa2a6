"""服务评价: rate a finished service (好差评) or the hall, and review a bad review's fix."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from bot.dispatcher import Context, PassOn, Reply, Router, TapInstead, is_number, normalize
from config.menu import entries, words_of
from handlers.complaint import answers_elsewhere
from handlers.welcome import list_shown_after
from models import feedback
from models.feedback import Evaluation, FollowUp
from models.hall import cached_main_hall
from models.queue import Window

log = logging.getLogger(__name__)
router = Router("evaluation")

CHOOSE_STATE = "evaluation.choose"
RATE_STATE = "evaluation.rate"
COMMENT_STATE = "evaluation.comment"
# The list shows at most this many services (newest first), and as many cases to review.
MAX_LISTED = 8
# Words that end the comment step without a comment.
SKIP_WORDS = frozenset({"跳过", "不用", "没有", "无", "不用了", "没有了", "skip", "no"})

_SEP = r"[\s,，.。!！:：、;；~～]"
_LEVEL_WORDS = "|".join(re.escape(w) for w in sorted(feedback.LEVEL_WORDS, key=len, reverse=True))
# Voice recognition writes a spoken score in Chinese numerals ("五分").
_NUMERALS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
_DIGIT = "[1-5一二两三四五]"
# A rating as typed or said: "5", "4 很耐心", "5分", "五星好评", "满意，谢谢". A bare digit or a
# level word must end the words or be followed by a separator ("3号窗口" is not a rating).
RATING_PATTERN = (
    rf"^(?:(?P<unit>{_DIGIT})\s*(?:分|星|stars?)|(?P<digit>{_DIGIT})(?=$|{_SEP})"
    rf"|(?P<word>{_LEVEL_WORDS})(?=$|{_SEP})){_SEP}*+(?!号)(?P<comment>.*)$"
)
_RATING = re.compile(RATING_PATTERN)


def parse_rating(words: str) -> tuple[int, str] | None:
    """Return (level, comment) when the words are a rating, else None."""
    match = _RATING.match(normalize(words))
    if match is None:
        return None
    digit = match.group("unit") or match.group("digit")
    if digit:
        level = _NUMERALS[digit] if digit in _NUMERALS else int(digit)
    else:
        level = feedback.LEVEL_WORDS[match.group("word")]
    return level, match.group("comment").strip()


@router.menu("EVALUATION")
@router.text(*words_of("EVALUATION"), "追评", "追加评价", "rating", "evaluate")
async def open_evaluation(ctx: Context) -> Reply:
    """List the services to rate, the answered cases to review, and the hall as a whole."""
    now = ctx.now()
    pending = (await feedback.rateable(ctx.openid, now))[:MAX_LISTED]
    reviews = (await feedback.reviewable(ctx.openid, now))[:MAX_LISTED]
    if len(pending) == 1 and not reviews:
        return await _ask_rate(ctx, pending[0])
    if not pending and not reviews:
        await ctx.dialog.start(RATE_STATE, hall=True)
        days = feedback.feedback_rules().rate_within_days
        return ctx.reply("evaluation/ask_hall.j2", has_nothing_pending=True, days=days)
    options: list[list[Any]] = [["ticket", e.id] for e in pending]
    options += [["review", f.id] for f in reviews]
    options.append(["hall", 0])
    await ctx.dialog.start(CHOOSE_STATE, options=options)
    return ctx.reply(
        "evaluation/choose.j2",
        services=[await _service(ctx, e) for e in pending],
        reviews=[{"case_no": f.case_no, "answer": f.answer} for f in reviews],
        days=feedback.feedback_rules().rate_within_days,
    )


async def _service(ctx: Context, evaluation: Evaluation) -> dict[str, Any]:
    """Describe a rated or invited service: number, category, window and when it finished."""
    ticket = evaluation.ticket
    code = evaluation.window_code
    window = await Window.get_or_none(code=code) if code else None
    finished = evaluation.finished_at or ctx.now()
    return {
        "number": ticket.number if ticket else "",
        "category": evaluation.category.name if evaluation.category else "",
        "window": window.name if window else code,
        "finished_at": finished.astimezone(ctx.services.settings.tz).strftime("%m-%d %H:%M"),
    }


@router.dialog(CHOOSE_STATE)
async def choose_subject(ctx: Context) -> Reply:
    """The citizen picked a number from the list: a service, a case to review, or the hall."""
    options = ctx.dialog.data.get("options", [])
    if not is_number(ctx.words):
        raise PassOn
    index = int(ctx.words)
    if not 1 <= index <= len(options):
        return ctx.reply("evaluation/choose_again.j2", count=len(options))
    subject, target = options[index - 1]
    if subject == "ticket":
        evaluation = await Evaluation.get_or_none(id=target, openid=ctx.openid)
        if evaluation is None or evaluation.level is not None:
            await ctx.dialog.finish()
            raise feedback.AlreadyRated()
        await evaluation.fetch_related("ticket", "category")
        return await _ask_rate(ctx, evaluation)
    if subject == "review":
        follow_up = await FollowUp.get(id=target)
        await ctx.dialog.start(RATE_STATE, review=follow_up.id)
        return ctx.reply("evaluation/ask_review.j2", case_no=follow_up.case_no)
    await ctx.dialog.start(RATE_STATE, hall=True)
    return ctx.reply("evaluation/ask_hall.j2", has_nothing_pending=False, days=0)


async def _ask_rate(ctx: Context, evaluation: Evaluation) -> Reply:
    await ctx.dialog.start(RATE_STATE, evaluation=evaluation.id)
    return ctx.reply("evaluation/ask_rate.j2", service=await _service(ctx, evaluation))


def _rating(ctx: Context) -> tuple[int | None, str]:
    found = parse_rating(ctx.words)
    if found is None:
        return None, ctx.incoming.text.strip()
    return found


@router.dialog(RATE_STATE)
async def give_rating(ctx: Context) -> Reply:
    """The citizen replied with a level (1-5 or its words) and maybe a comment."""
    level, comment = _rating(ctx)
    if level is None and answers_elsewhere(ctx):
        raise PassOn
    data = ctx.dialog.data
    if data.get("hall"):
        return await _rate_hall(ctx, level, comment)
    if level is None:
        return ctx.reply("evaluation/ask_again.j2", is_review="review" in data)
    await ctx.dialog.finish()
    if "review" in data:
        follow_up = await feedback.review(
            ctx.services, ctx.openid, int(data["review"]), level, comment
        )
        return ctx.reply("evaluation/reviewed.j2", case_no=follow_up.case_no, level=level)
    return await _rate(ctx, int(data["evaluation"]), level, comment)


async def _rate(ctx: Context, evaluation_id: int, level: int, comment: str) -> Reply:
    evaluation = await feedback.rate(ctx.services, ctx.openid, evaluation_id, level, comment)
    return await _thank(ctx, evaluation)


async def _thank(ctx: Context, evaluation: Evaluation) -> Reply:
    follow_up = await FollowUp.get_or_none(evaluation_id=evaluation.id)
    if not evaluation.comment:
        await ctx.dialog.start(COMMENT_STATE, evaluation=evaluation.id)
    await evaluation.fetch_related("ticket", "category")
    return ctx.reply(
        "evaluation/rated.j2",
        level=evaluation.level,
        has_comment=bool(evaluation.comment),
        is_hall=evaluation.subject == "hall",
        service=await _service(ctx, evaluation) if evaluation.subject == "ticket" else None,
        follow_up=_follow_up(ctx, follow_up),
    )


def _follow_up(ctx: Context, follow_up: FollowUp | None) -> dict[str, str] | None:
    if follow_up is None:
        return None
    tz = ctx.services.settings.tz
    return {
        "case_no": follow_up.case_no,
        "visit_due": follow_up.visit_due_at.astimezone(tz).strftime("%m-%d %H:%M"),
        "fix_due": follow_up.fix_due_at.astimezone(tz).strftime("%Y-%m-%d"),
    }


async def _rate_hall(ctx: Context, level: int | None, comment: str) -> Reply:
    if level is None and len(comment) < 2:
        return ctx.reply("evaluation/ask_hall.j2", has_nothing_pending=False, days=0)
    await ctx.dialog.finish()
    hall = await cached_main_hall()
    evaluation = await feedback.rate_hall(ctx.services, ctx.openid, level, comment, hall)
    if level is None:
        return ctx.reply("evaluation/hall_comment.j2")
    return await _thank(ctx, evaluation)


@router.dialog(COMMENT_STATE)
async def add_comment(ctx: Context) -> Reply:
    """Text typed right after a rating is its comment; 跳过 leaves it without one."""
    if answers_elsewhere(ctx):
        raise PassOn  # a service's name or a command, not a comment: the rating stands as it is
    evaluation_id = int(ctx.dialog.data.get("evaluation", 0))
    await ctx.dialog.finish()
    if ctx.words in SKIP_WORDS:
        return ctx.reply("evaluation/comment_skipped.j2")
    is_added = await feedback.add_comment(ctx.openid, evaluation_id, ctx.incoming.text)
    return ctx.reply("evaluation/commented.j2", is_added=is_added)


async def _answers_invitation(ctx: Context, fresh: list[Evaluation]) -> bool:
    """Tell whether a bare number answers the last invitation to rate: one went out, and the
    numbered list of services was not shown after it."""
    invited_at = await feedback.invitation_made_at(fresh[0]) if fresh else None
    if invited_at is None:
        return False
    return not await list_shown_after(ctx, invited_at)


def _bare_number(words: str) -> int | None:
    """Return the number a message is and nothing more: "3", or 三 as voice writes it."""
    if is_number(words):
        return int(words)
    return _NUMERALS.get(words)


@router.text(pattern=RATING_PATTERN)
async def rate_latest(ctx: Context) -> Reply:
    """A rating typed after the invitation rates the service finished last (within a day).

    Without such a service a bare number is what it is elsewhere: an entry of the help list.
    """
    if ctx.dialog.is_expired:
        # The number answered a list that has timed out, not an invitation to rate.
        await ctx.dialog.finish()
        return ctx.reply("welcome/expired.j2")
    rules = feedback.feedback_rules()
    now = ctx.now()
    pending = await feedback.rateable(ctx.openid, now)
    recent = now - timedelta(hours=rules.reply_within_h)
    fresh = [e for e in pending if e.finished_at is not None and e.finished_at >= recent]
    bare = _bare_number(ctx.words)
    if bare is not None and not await _answers_invitation(ctx, fresh):
        raise TapInstead(list(entries())[bare - 1])
    if not fresh:
        return ctx.reply("evaluation/nothing_to_rate.j2", has_older=bool(pending))
    level, comment = _rating(ctx)
    assert level is not None  # the pattern matched
    log.debug("rating by reply evaluation=%d", fresh[0].id)
    return await _rate(ctx, fresh[0].id, level, comment)
