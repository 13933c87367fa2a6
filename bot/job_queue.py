"""Queue arq jobs from the request path in the round trips the webhook already makes."""

from __future__ import annotations

import logging
from typing import Any

from arq.constants import expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms

from bot import keys
from bot.services import Services

log = logging.getLogger(__name__)

# What arq's enqueue_job does with WATCH, EXISTS and MULTI (three round trips on a connection
# of its own), as one script: a job id queued or finished already is not queued again.
_ENQUEUE_SCRIPT = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""


async def enqueue(services: Services, function: str, *args: Any, job_id: str) -> bool:
    """Queue `function(*args)` for the workers, at most once per `job_id`; False if queued.

    With the webhook's Redis batch the job rides in the pipeline the requests share; elsewhere
    (workers, scripts) it goes through arq's own enqueue_job. The job is arq's: same key, same
    serialized form, same queue, run by any arq worker.
    """
    if services.batch is None:
        if services.jobs is None:
            raise RuntimeError("no job queue to queue on")
        return await services.jobs.enqueue_job(function, *args, _job_id=job_id) is not None
    now_ms = timestamp_ms()
    job = serialize_job(function, args, {}, None, now_ms)
    (queued,) = await services.batch.execute(
        (
            "EVAL",
            _ENQUEUE_SCRIPT,
            3,
            job_key_prefix + job_id,
            result_key_prefix + job_id,
            keys.JOB_QUEUE,
            expires_extra_ms,
            job,
            now_ms,
            job_id,
        )
    )
    return bool(queued)
