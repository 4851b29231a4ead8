-- Records an account event (see model Event) from inside the statement or transaction that makes the
-- change it reports, so the event exists if and only if the change committed. `p_type` is one of
-- EVENT_TYPES (src/events/event-types.ts); operation outcomes are recorded by the trigger on actions.
CREATE OR REPLACE FUNCTION "emit_event"(
    p_account_id INTEGER,
    p_type TEXT,
    p_subject JSONB
) RETURNS BIGINT LANGUAGE sql VOLATILE AS $$
    INSERT INTO "events" ("account_id", "type", "subject")
    VALUES (p_account_id, p_type, p_subject)
    RETURNING "id"
$$;
