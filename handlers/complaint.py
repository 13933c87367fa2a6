"""投诉建议: write a complaint or suggestion with pictures, get a case number, follow it."""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from bot.dispatcher import Context, PassOn, Reply, Router, normalize
from config.menu import entries, words_of
from models import feedback
from models.feedback import Complaint, FollowUp

log = logging.getLogger(__name__)
router = Router("complaint")

WRITE_STATE = "complaint.write"
SUBMIT_WORDS = frozenset({"提交", "确认提交", "确认", "发送", "submit", "send"})
LOOKUP_WORDS = ("我的投诉", "投诉进度", "投诉查询", "我的建议", "my complaints")
HELP_WORDS = frozenset({"帮助", "菜单", "help", "menu"})
# Fewer characters than this say too little for anyone to act on.
MIN_TEXT_CHARS = 5
_SUGGESTION_WORDS = ("建议", "意见", "suggest")
# "投诉：...", "建议 ..." : the service's word first, then the text, whatever words it holds.
LEADING_WORD = r"^(?:我要|我想)?(?:投诉建议|投诉|建议|意见)(?:\s|[:：,，])"


def _kind(words: str) -> str:
    """Tell a complaint from a suggestion by the word used; the menu's name says neither."""
    if words.startswith("投诉建议"):
        return ""
    if "投诉" in words or "complain" in words:
        return "complaint"
    if any(w in words for w in _SUGGESTION_WORDS):
        return "suggestion"
    return ""


def _description(ctx: Context) -> str:
    """Return the typed text without the service's word at its start ("投诉：窗口态度差")."""
    text = ctx.incoming.text.strip().removeprefix("我要").removeprefix("我想")
    for word in sorted(words_of("COMPLAINT"), key=len, reverse=True):
        if text.startswith(word):
            return text[len(word) :].strip(" :：,，。.")
    return text


@router.menu("COMPLAINT")
@router.text(*words_of("COMPLAINT"), "complaint", "suggestion", pattern=LEADING_WORD)
async def start_writing(ctx: Context) -> Reply:
    """Open the writing dialog; words typed after "投诉" already are its text."""
    kind = _kind(ctx.words)
    recent = await feedback.complaints_of(ctx.openid, limit=3)
    text = _description(ctx)
    await ctx.dialog.start(WRITE_STATE, kind=kind, text="", images=[])
    if len(text) >= MIN_TEXT_CHARS:
        return await _add_text(ctx, text)
    rules = feedback.feedback_rules()
    return ctx.reply(
        "complaint/intro.j2",
        kind=kind,
        recent=[_case(ctx, c) for c in recent],
        max_images=rules.max_images,
        days=rules.answer_working_days,
    )


@router.dialog(WRITE_STATE)
async def write(ctx: Context) -> Reply:
    """Text is the description (more text adds to it); 提交 files the case."""
    if ctx.words in SUBMIT_WORDS:
        return await _submit(ctx)
    if answers_elsewhere(ctx):
        if not ctx.dialog.data.get("text") and not ctx.dialog.data.get("images"):
            raise PassOn  # nothing written yet: nothing is lost
        return ctx.reply("complaint/still_writing.j2", words=ctx.incoming.text.strip())
    return await _add_text(ctx, ctx.incoming.text.strip())


async def _add_text(ctx: Context, text: str) -> Reply:
    rules = feedback.feedback_rules()
    so_far = str(ctx.dialog.data.get("text", ""))
    joined = f"{so_far}\n{text}".strip() if so_far else text
    if len(joined) < MIN_TEXT_CHARS:
        return ctx.reply("complaint/too_short.j2", least=MIN_TEXT_CHARS)
    await ctx.dialog.go(WRITE_STATE, text=joined[: rules.text_max_chars])
    return ctx.reply(
        "complaint/draft.j2",
        text=joined[: rules.text_max_chars],
        is_cut=len(joined) > rules.text_max_chars,
        images=len(ctx.dialog.data.get("images", [])),
        max_images=rules.max_images,
    )


@router.dialog(f"{WRITE_STATE}/image")
async def attach_picture(ctx: Context) -> Reply:
    """A picture sent while writing goes with the case."""
    rules = feedback.feedback_rules()
    images = list(ctx.dialog.data.get("images", []))
    raw = ctx.incoming.raw
    if len(images) >= rules.max_images:
        return ctx.reply("complaint/images_full.j2", max_images=rules.max_images)
    images.append({"media_id": str(raw.get("MediaId", "")), "pic_url": str(raw.get("PicUrl", ""))})
    await ctx.dialog.go(WRITE_STATE, images=images)
    has_text = bool(ctx.dialog.data.get("text"))
    return ctx.reply(
        "complaint/image_added.j2",
        count=len(images),
        max_images=rules.max_images,
        has_text=has_text,
    )


async def _submit(ctx: Context) -> Reply:
    data = ctx.dialog.data
    text = str(data.get("text", ""))
    if len(text) < MIN_TEXT_CHARS:
        return ctx.reply("complaint/too_short.j2", least=MIN_TEXT_CHARS)
    complaint = await feedback.file_complaint(
        ctx.openid,
        str(data.get("kind", "")),
        text,
        list(data.get("images", [])),
        ctx.now(),
        ctx.services.settings.tz,
    )
    await ctx.dialog.finish()
    return ctx.reply("complaint/filed.j2", case=_case(ctx, complaint))


@router.text(
    *LOOKUP_WORDS, pattern=r"^(?:查询|查看|进度)?\s*(?:ts|hc)\s*0*\d{1,9}$", is_command=True
)
async def show_cases(ctx: Context) -> Reply:
    """Show the citizen's cases (the one whose number was typed, or the latest few)."""
    found = feedback.parse_case_no(ctx.words)
    if found is not None:
        prefix, case_id = found
        if prefix == "HC":
            follow_up = await FollowUp.get_or_none(id=case_id, openid=ctx.openid)
            if follow_up is None:
                raise feedback.CaseNotFound(case_no=f"HC{case_id:06d}")
            return ctx.reply("complaint/follow_up.j2", case=_follow_up(ctx, follow_up))
        complaint = await Complaint.get_or_none(id=case_id, openid=ctx.openid)
        if complaint is None:
            raise feedback.CaseNotFound(case_no=f"TS{case_id:06d}")
        return ctx.reply("complaint/case.j2", case=_case(ctx, complaint), is_whole=True)
    recent = await feedback.complaints_of(ctx.openid, limit=5)
    return ctx.reply("complaint/cases.j2", cases=[_case(ctx, c) for c in recent])


@cache
def service_words() -> frozenset[str]:
    """Return what a citizen types for a service rather than as an answer: menu names and words."""
    words = {w for e in entries().values() for w in (*e.words, e.name)}
    return frozenset(normalize(w) for w in words | HELP_WORDS)


def is_service_word(words: str) -> bool:
    return normalize(words) in service_words()


def answers_elsewhere(ctx: Context) -> bool:
    """Tell words a dialog waiting for text should pass on: a service's name, or a command
    (取消A001) that acts on what the citizen holds."""
    return is_service_word(ctx.words) or ctx.is_command(ctx.words)


def _case(ctx: Context, complaint: Complaint) -> dict[str, Any]:
    tz = ctx.services.settings.tz
    answered = complaint.answered_at.astimezone(tz) if complaint.answered_at else None
    return {
        "case_no": complaint.case_no,
        "kind": complaint.kind,
        "status": complaint.status,
        "text": complaint.text,
        "images": len(complaint.images or []),
        "created_at": complaint.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        "due": complaint.due_at.astimezone(tz).strftime("%Y-%m-%d"),
        "answer": complaint.answer,
        "answered_at": answered.strftime("%Y-%m-%d %H:%M") if answered else "",
    }


def _follow_up(ctx: Context, follow_up: FollowUp) -> dict[str, Any]:
    tz = ctx.services.settings.tz
    answered = follow_up.answered_at.astimezone(tz) if follow_up.answered_at else None
    return {
        "case_no": follow_up.case_no,
        "status": follow_up.status,
        "answer": follow_up.answer,
        "answered_at": answered.strftime("%Y-%m-%d %H:%M") if answered else "",
        "fix_due": follow_up.fix_due_at.astimezone(tz).strftime("%Y-%m-%d"),
        "review_level": follow_up.review_level,
    }
