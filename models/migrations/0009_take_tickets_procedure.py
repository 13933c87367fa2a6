"""PostgreSQL: remote takes of one category in one call, however many arrive together.

take_tickets locks the day's counter once for a whole batch, inserts its tickets and events,
commits, then reads what each wait estimate needs in a fresh transaction. It replaces 0008's
take_ticket, a batch of one doing the same: in the morning rush one process's concurrent
takes share a call (models/queue_takes.py), a statement and a commit instead of one each.
"""

import importlib

from tortoise import migrations
from tortoise.migrations import operations as ops

PROCEDURE = """
CREATE OR REPLACE PROCEDURE take_tickets(
    p_hall integer, p_category integer, p_day date, p_remote integer, p_limit integer,
    p_prefix text, p_openids text[], p_keys text[], p_at timestamptz[], p_sample integer,
    p_code text,
    INOUT ids integer[] DEFAULT NULL, INOUT seqs integer[] DEFAULT NULL,
    INOUT numbers text[] DEFAULT NULL, INOUT places integer[] DEFAULT NULL,
    INOUT aheads bigint[] DEFAULT NULL, INOUT handling_min double precision DEFAULT NULL,
    INOUT windows text DEFAULT NULL, INOUT near_aheads integer[] DEFAULT NULL
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    taken integer;
    granted integer;
    last_seq integer;
    last_place integer;
    base bigint;
    range_places integer[];
    range_ids integer[];
BEGIN
    -- A ticket its holder kept from an earlier day (closing passed unseen) never blocks
    -- today's take: it expires here, as the closing job would have expired it.
    WITH stale AS (
        SELECT t.id, t.status, t.active_key FROM ticket t
        WHERE t.active_key = ANY(p_keys) AND t.local_day < p_day
          AND t.status IN ('waiting', 'called', 'serving', 'missed')
        FOR UPDATE
    ), expired AS (
        UPDATE ticket t SET status = 'expired', active_key = NULL, window_slot = NULL
        FROM stale s WHERE t.id = s.id
        RETURNING t.id, s.status AS from_status, s.active_key AS key
    )
    INSERT INTO ticket_event (ticket_id, action, from_status, to_status, at, actor, window_code,
                              note)
    SELECT e.id, 'expire', e.from_status, 'expired', p_at[array_position(p_keys, e.key)],
           'system', '', ''
    FROM expired e;
    INSERT INTO number_counter (hall_id, category_id, local_day, seq, remote_taken, last_place)
    VALUES (p_hall, p_category, p_day, 0, 0, 0)
    ON CONFLICT (hall_id, category_id, local_day) DO NOTHING;
    SELECT c.remote_taken INTO taken FROM number_counter c
    WHERE c.hall_id = p_hall AND c.category_id = p_category AND c.local_day = p_day
    FOR UPDATE;
    -- The first takes of the batch get what is left of the remote quota.
    granted := cardinality(p_openids);
    IF p_remote = 1 THEN
        granted := least(granted, p_limit - taken);
    END IF;
    IF granted <= 0 THEN
        RETURN;  -- the remote quota is used up: every value stays NULL
    END IF;
    UPDATE number_counter c
    SET seq = c.seq + granted, remote_taken = c.remote_taken + granted * p_remote,
        last_place = c.last_place + granted
    WHERE c.hall_id = p_hall AND c.category_id = p_category AND c.local_day = p_day
    RETURNING c.seq, c.last_place INTO last_seq, last_place;
    WITH given AS (
        SELECT o.i, o.openid, p_keys[o.i] AS key, p_at[o.i] AS at,
               last_seq - granted + o.i::integer AS seq,
               last_place - granted + o.i::integer AS place
        FROM unnest(p_openids[1:granted]) WITH ORDINALITY AS o(openid, i)
    ), made AS (
        INSERT INTO ticket AS t (
            hall_id, category_id, issued_category_id, local_day, seq, number, source,
            priority, openid, status, active_key, requeues, recalls, is_near_told, place,
            queued_at, created_at
        )
        SELECT p_hall, p_category, p_category, p_day, g.seq,
               p_prefix || CASE WHEN g.seq < 1000 THEN lpad(g.seq::text, 3, '0')
                                ELSE g.seq::text END,
               'remote', 0, g.openid, 'waiting', g.key, 0, 0, false, g.place, g.at, g.at
        FROM given g ORDER BY g.i
        RETURNING t.id, t.seq, t.number, t.place, t.queued_at
    ), recorded AS (
        INSERT INTO ticket_event (
            ticket_id, action, from_status, to_status, at, actor, window_code, note
        )
        SELECT m.id, 'take', '', 'waiting', m.queued_at, 'citizen', '', 'remote' FROM made m
    )
    SELECT array_agg(m.id ORDER BY m.seq), array_agg(m.seq ORDER BY m.seq),
           array_agg(m.number ORDER BY m.seq), array_agg(m.place ORDER BY m.seq)
    INTO ids, seqs, numbers, places FROM made m;
    COMMIT;  -- the tickets are taken and the counter row free before the readings
    -- Ahead of a take: bookings, then walk-ins before it in (place, id). The batch's places
    -- are one run; what waits inside that run is counted take by take.
    SELECT count(*) FILTER (WHERE w.priority > 0 OR (w.place, w.id) < (places[1], ids[1])),
           array_agg(w.place) FILTER (WHERE w.priority = 0
                                      AND (w.place, w.id) >= (places[1], ids[1])
                                      AND w.place <= places[granted]),
           array_agg(w.id) FILTER (WHERE w.priority = 0
                                   AND (w.place, w.id) >= (places[1], ids[1])
                                   AND w.place <= places[granted])
    INTO base, range_places, range_ids
    FROM ticket w
    WHERE w.hall_id = p_hall AND w.category_id = p_category AND w.status = 'waiting'
      AND w.local_day = p_day;
    SELECT array_agg(base + (SELECT count(*) FROM unnest(range_places, range_ids) AS r(place, id)
                             WHERE (r.place, r.id) < (m.place, m.id)) ORDER BY m.i)
    INTO aheads
    FROM unnest(places, ids) WITH ORDINALITY AS m(place, id, i);
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY recent.span_min)::double precision
    INTO handling_min
    FROM (SELECT extract(epoch FROM d.finished_at - d.called_at) / 60 AS span_min
          FROM ticket d
          WHERE d.hall_id = p_hall AND d.category_id = p_category AND d.status = 'done'
            AND d.finished_at IS NOT NULL AND d.called_at IS NOT NULL
          ORDER BY d.finished_at DESC LIMIT p_sample) recent
    WHERE recent.span_min > 0;
    SELECT coalesce(json_agg(json_build_array(q.name, q.is_open) ORDER BY q.sort, q.id), '[]')
           ::text
    INTO windows
    FROM queue_window q WHERE q.hall_id = p_hall AND q.categories ? p_code;
    SELECT array_agg(z.near_ahead::integer ORDER BY o.i) INTO near_aheads
    FROM unnest(p_openids[1:granted]) WITH ORDINALITY AS o(openid, i)
    LEFT JOIN citizen z ON z.openid = o.openid;
END
$$;
"""

_DROP = (
    "DROP PROCEDURE IF EXISTS take_tickets(integer, integer, date, integer, integer, text,"
    " text[], text[], timestamptz[], integer, text, integer[], integer[], text[], integer[],"
    " bigint[], double precision, text, integer[]);"
)
# 0008's module name starts with a digit: it cannot be imported by a plain statement.
_EARLIER = importlib.import_module("models.migrations.0008_issue_ticket_function")


async def create_procedure(apps: object, schema_editor: object) -> None:
    client = schema_editor.client  # type: ignore[attr-defined]
    if client.capabilities.dialect == "postgres":
        await client.execute_script(PROCEDURE)
        await client.execute_script(_EARLIER.DROP_PROCEDURE)


async def drop_procedure(apps: object, schema_editor: object) -> None:
    client = schema_editor.client  # type: ignore[attr-defined]
    if client.capabilities.dialect == "postgres":
        await client.execute_script(_DROP)
        await client.execute_script(_EARLIER.PROCEDURE)


class Migration(migrations.Migration):
    dependencies = [("models", "0008_issue_ticket_function")]

    initial = False

    operations = [ops.RunPython(create_procedure, drop_procedure)]
