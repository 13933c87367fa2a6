"""PostgreSQL: take a number in one statement, and a remote take with its wait in one call.

issue_ticket (a function) takes the number and inserts the ticket and its first event, the
counter row locked only while it runs. take_ticket (a procedure, for remote takes outside a
transaction) calls it, commits, which lets the counter row go, then reads what the wait
estimate needs in a fresh transaction: the readings see every ticket committed before, as a
second round trip did, and the next take does not wait for them. SQLite keeps separate
statements (models/queue.py, models/queue_wait.py).
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

FUNCTION = """
CREATE OR REPLACE FUNCTION issue_ticket(
    p_hall integer, p_category integer, p_day date, p_remote integer, p_limit integer,
    p_prefix text, p_source text, p_priority integer, p_openid text, p_key text,
    p_at timestamptz, p_actor text
) RETURNS TABLE (id integer, seq integer, number text, place integer)
LANGUAGE plpgsql VOLATILE AS $$
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
    RETURN QUERY SELECT new_id, new_seq, new_number, new_place;
END
$$;
"""

PROCEDURE = """
CREATE OR REPLACE PROCEDURE take_ticket(
    p_hall integer, p_category integer, p_day date, p_remote integer, p_limit integer,
    p_prefix text, p_source text, p_priority integer, p_openid text, p_key text,
    p_at timestamptz, p_actor text, p_sample integer, p_code text, p_holder text,
    INOUT id integer DEFAULT NULL, INOUT seq integer DEFAULT NULL,
    INOUT number text DEFAULT NULL, INOUT place integer DEFAULT NULL,
    INOUT ahead bigint DEFAULT NULL, INOUT handling_min double precision DEFAULT NULL,
    INOUT windows text DEFAULT NULL, INOUT near_ahead integer DEFAULT NULL
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    issued record;
BEGIN
    SELECT * INTO issued FROM issue_ticket(
        p_hall, p_category, p_day, p_remote, p_limit, p_prefix, p_source, p_priority,
        p_openid, p_key, p_at, p_actor
    );
    IF NOT FOUND THEN
        RETURN;  -- the remote quota is used up: every value stays NULL
    END IF;
    COMMIT;  -- the ticket is taken and the counter row free before the readings
    id := issued.id;
    seq := issued.seq;
    number := issued.number;
    place := issued.place;
    SELECT count(*) INTO ahead FROM ticket w
    WHERE w.hall_id = p_hall AND w.category_id = p_category AND w.status = 'waiting'
      AND w.local_day = p_day
      AND (w.priority > p_priority
           OR (w.priority = p_priority
               AND (w.place < issued.place OR (w.place = issued.place AND w.id < issued.id))));
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY recent.span_min)::double precision
    INTO handling_min
    FROM (SELECT extract(epoch FROM d.finished_at - d.called_at) / 60 AS span_min
          FROM ticket d
          WHERE d.hall_id = p_hall AND d.category_id = p_category AND d.status = 'done'
            AND d.finished_at IS NOT NULL AND d.called_at IS NOT NULL
          ORDER BY d.finished_at DESC LIMIT p_sample) recent
    WHERE recent.span_min > 0;
    SELECT coalesce(json_agg(json_build_array(q.name, q.is_open) ORDER BY q.sort, q.id), '[]')::text
    INTO windows
    FROM queue_window q WHERE q.hall_id = p_hall AND q.categories ? p_code;
    SELECT z.near_ahead::integer INTO near_ahead FROM citizen z WHERE z.openid = p_holder;
END
$$;
"""

DROP_PROCEDURE = (
    "DROP PROCEDURE IF EXISTS take_ticket(integer, integer, date, integer, integer, text, text,"
    " integer, text, text, timestamptz, text, integer, text, text, integer, integer, text,"
    " integer, bigint, double precision, text, integer);"
)
_DROP = DROP_PROCEDURE + (
    " DROP FUNCTION IF EXISTS issue_ticket(integer, integer, date, integer, integer, text,"
    " text, integer, text, text, timestamptz, text);"
)


async def create_routines(apps: object, schema_editor: object) -> None:
    client = schema_editor.client  # type: ignore[attr-defined]
    if client.capabilities.dialect == "postgres":
        await client.execute_script(FUNCTION)
        await client.execute_script(PROCEDURE)


async def drop_routines(apps: object, schema_editor: object) -> None:
    client = schema_editor.client  # type: ignore[attr-defined]
    if client.capabilities.dialect == "postgres":
        await client.execute_script(_DROP)


class Migration(migrations.Migration):
    dependencies = [("models", "0007_catalogue_applications")]

    initial = False

    operations = [ops.RunPython(create_routines, drop_routines)]
