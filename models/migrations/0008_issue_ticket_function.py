"""PostgreSQL: take a number and read the new ticket's wait in one round trip.

The function runs the statements the webhook sent one after the other: the counter, the
ticket and its first event as one statement, then the readings for the wait estimate. A
volatile function gives each statement a fresh snapshot, so the readings see every ticket
committed before the counter row was granted, as a second round trip did. A NULL p_sample
skips the readings. SQLite keeps the two round trips (models/queue.py, models/queue_wait.py).
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

FUNCTION = """
CREATE OR REPLACE FUNCTION issue_ticket(
    p_hall integer, p_category integer, p_day date, p_remote integer, p_limit integer,
    p_prefix text, p_source text, p_priority integer, p_openid text, p_key text,
    p_at timestamptz, p_actor text, p_sample integer, p_code text, p_holder text
) RETURNS TABLE (
    id integer, seq integer, number text, place integer,
    ahead bigint, handling_min double precision, windows text, near_ahead integer
) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    new_id integer;
    new_seq integer;
    new_place integer;
    new_number text;
BEGIN
    INSERT INTO number_counter AS c (hall_id, category_id, local_day, seq, remote_taken, last_place)
    VALUES (p_hall, p_category, p_day, 1, p_remote, 1)
    ON CONFLICT (hall_id, category_id, local_day) DO UPDATE
    SET seq = c.seq + 1,
        remote_taken = c.remote_taken + excluded.remote_taken,
        last_place = c.last_place + 1
    WHERE c.remote_taken + excluded.remote_taken <= p_limit
    RETURNING c.seq, c.last_place INTO new_seq, new_place;
    IF NOT FOUND THEN
        RETURN;  -- the remote quota is used up
    END IF;
    new_number := p_prefix
        || CASE WHEN new_seq < 1000 THEN lpad(new_seq::text, 3, '0') ELSE new_seq::text END;
    INSERT INTO ticket AS t (
        hall_id, category_id, issued_category_id, local_day, seq, number, source, priority,
        openid, status, active_key, requeues, recalls, is_near_told, place, queued_at,
        created_at
    )
    VALUES (
        p_hall, p_category, p_category, p_day, new_seq, new_number, p_source, p_priority,
        p_openid, 'waiting', p_key, 0, 0, false, new_place, p_at, p_at
    )
    RETURNING t.id INTO new_id;
    INSERT INTO ticket_event (ticket_id, action, from_status, to_status, at, actor, window_code, note)
    VALUES (new_id, 'take', '', 'waiting', p_at, p_actor, '', p_source);

    IF p_sample IS NULL THEN  -- no readings asked for
        RETURN QUERY SELECT new_id, new_seq, new_number, new_place,
            NULL::bigint, NULL::double precision, NULL::text, NULL::integer;
        RETURN;
    END IF;
    RETURN QUERY SELECT
        new_id, new_seq, new_number, new_place,
        (SELECT count(*) FROM ticket w
         WHERE w.hall_id = p_hall AND w.category_id = p_category AND w.status = 'waiting'
           AND w.local_day = p_day
           AND (w.priority > p_priority
                OR (w.priority = p_priority
                    AND (w.place < new_place OR (w.place = new_place AND w.id < new_id))))),
        (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY recent.span_min)::double precision
         FROM (SELECT extract(epoch FROM d.finished_at - d.called_at) / 60 AS span_min
               FROM ticket d
               WHERE d.hall_id = p_hall AND d.category_id = p_category AND d.status = 'done'
                 AND d.finished_at IS NOT NULL AND d.called_at IS NOT NULL
               ORDER BY d.finished_at DESC LIMIT p_sample) recent
         WHERE recent.span_min > 0),
        (SELECT coalesce(json_agg(json_build_array(q.name, q.is_open) ORDER BY q.sort, q.id), '[]')
         FROM queue_window q WHERE q.hall_id = p_hall AND q.categories ? p_code)::text,
        (SELECT z.near_ahead::integer FROM citizen z WHERE z.openid = p_holder);
END
$$;
"""


async def create_function(apps: object, schema_editor: object) -> None:
    client = schema_editor.client  # type: ignore[attr-defined]
    if client.capabilities.dialect == "postgres":
        await client.execute_script(FUNCTION)


async def drop_function(apps: object, schema_editor: object) -> None:
    client = schema_editor.client  # type: ignore[attr-defined]
    if client.capabilities.dialect == "postgres":
        await client.execute_script(
            "DROP FUNCTION IF EXISTS issue_ticket(integer, integer, date, integer, integer, text,"
            " text, integer, text, text, timestamptz, text, integer, text, text)"
        )


class Migration(migrations.Migration):
    dependencies = [("models", "0007_catalogue_applications")]

    initial = False

    operations = [ops.RunPython(create_function, drop_function)]
