"""Every Redis key prefix and TTL the project uses, in one place."""

# A delivery seen within this time is a retry. WeChat retries up to ~15 s apart, 3 times.
DEDUP_PREFIX = "dedup:"
# Longer than the accepted clock skew (protocol.MAX_CLOCK_SKEW_S): a replay finds its record.
DEDUP_TTL_S = 1500

# While the first delivery still runs, a retry polls for its reply this often.
DEDUP_POLL_S = 0.02

# Dialog state of one citizen. Kept beyond its own timeout so that a late answer can be told
# the dialog timed out instead of being treated as a new question.
DIALOG_PREFIX = "dialog:"
DIALOG_GRACE_S = 24 * 3600

# The shared access token, and the lock held by the one process that refreshes it.
TOKEN_KEY = "wechat:access_token"
TOKEN_LOCK_KEY = "wechat:access_token:lock"
TOKEN_LOCK_TTL_S = 10
# Refresh this long before the platform's expiry so no process sends with a dying token.
TOKEN_EARLY_S = 300

# Cache of a citizen's follow state and language, read on every message.
CITIZEN_PREFIX = "citizen:"
# Present while every language a citizen chose (other than the default) is in their hash: a
# hash without one then means the default, and no message reads the database for it. A Redis
# that lost its data lost this too; the first message after puts the languages back.
LANGUAGES_KEPT_KEY = "languages:kept"


def dedup_key(delivery_id: str) -> str:
    return DEDUP_PREFIX + delivery_id


def dialog_key(openid: str) -> str:
    return DIALOG_PREFIX + openid


def citizen_key(openid: str) -> str:
    return CITIZEN_PREFIX + openid


# When a citizen was last shown the numbered list of services: a bare number after it picks
# from the list, even when a rating invitation (回复数字1-5) came before. A day, as long as an
# invitation is answered by reply (config/feedback.toml reply_within_h).
LIST_SHOWN_PREFIX = "listshown:"
LIST_SHOWN_TTL_S = 24 * 3600


def list_shown_key(openid: str) -> str:
    return LIST_SHOWN_PREFIX + openid


# arq's queue of background jobs, shared by every webhook process and worker.
JOB_QUEUE = "arq:queue"
# The job that sends one notice. arq keeps one job per id while it is queued or running, so a
# notice queued twice (by `notify` and by the sweep) is still sent by one job.
NOTICE_JOB_PREFIX = "notice:"
# A delivery receipt that came before the worker stored the msgid: kept until the worker does.
# The platform reports within seconds; ten minutes covers a slow database.
EARLY_RECEIPT_PREFIX = "receipt:"
EARLY_RECEIPT_TTL_S = 600


def notice_job_id(notice_id: int) -> str:
    return f"{NOTICE_JOB_PREFIX}{notice_id}"


def claim_job_id(kind: str, ref: str) -> str:
    """The job claiming a notice: queued twice for one subject and kind, it runs once."""
    return f"{NOTICE_JOB_PREFIX}claim:{kind}:{ref}"


def early_receipt_key(msgid: str) -> str:
    return EARLY_RECEIPT_PREFIX + msgid


# The citizen's last reported position, for "附近" typed afterwards. WeChat reports it every 5 s
# while the chat is open; a short life keeps no trail of where a citizen has been.
LOCATION_PREFIX = "location:"
LOCATION_TTL_S = 600
# A place picked in the menu's location picker was answered; WeChat may post the same place
# again as a location message right after, which then gets no second list.
LOCATION_ANSWERED_PREFIX = "location_answered:"
LOCATION_ANSWERED_TTL_S = 30


def location_key(openid: str) -> str:
    return LOCATION_PREFIX + openid


def location_answered_key(openid: str) -> str:
    return LOCATION_ANSWERED_PREFIX + openid


# Wrong application look-ups (number + last four digits of a phone) by one citizen: four
# digits are 10,000 guesses, so a few wrong ones close the look-up for a while.
LOOKUP_FAILS_PREFIX = "lookup_fails:"
LOOKUP_FAILS_TTL_S = 3600
LOOKUP_FAILS_MAX = 5


def lookup_fails_key(openid: str) -> str:
    return LOOKUP_FAILS_PREFIX + openid
