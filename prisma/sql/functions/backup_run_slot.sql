-- A due slot of a server's backup policy, taken exactly once (src/backup-schedule/backup-scheduler.ts).
--
-- The server's row is locked first, then the run is inserted under the unique (server_id, slot_at) key:
-- a scheduler that loses the race inserts nothing and returns no row, so however many API replicas tick
-- at once, one run exists per slot. The winner then, reading after the lock: skips the slot when the
-- server's previous automatic backup is still being created, else creates an automatic backup through
-- backup_create_checked (the manual create's rules and locks; the manual limit does not apply), which
-- may find the server held by another operation (skipped too). A late run or one after missed slots
-- records backup_policy.missed in the same transaction. PL/pgSQL: each statement reads after the previous.
CREATE OR REPLACE FUNCTION "backup_run_slot"(
    p_server_id INTEGER,
    p_slot_at TIMESTAMPTZ,
    p_at TIMESTAMPTZ,
    p_late BOOLEAN,
    p_missed INTEGER,
    p_name VARCHAR,
    p_description VARCHAR
) RETURNS TABLE (
    run_id INTEGER,
    outcome TEXT,
    node_id INTEGER,
    action_id INTEGER,
    backup_id INTEGER
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_server RECORD;
    v_run INTEGER;
    v_backup_id INTEGER;
    v_action_id INTEGER;
    v_outcome TEXT;
BEGIN
    SELECT s."id", s."account_id", s."node_id", s."status" INTO v_server
    FROM "servers" s WHERE s."id" = p_server_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO "backup_runs" ("server_id", "account_id", "slot_at", "ran_at", "late", "missed_slots", "outcome")
    VALUES (p_server_id, v_server."account_id", p_slot_at, p_at, p_late, p_missed, 'pending')
    ON CONFLICT ("server_id", "slot_at") DO NOTHING
    RETURNING "id" INTO v_run;
    IF v_run IS NULL THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM "backups" b
               WHERE b."server_id" = p_server_id AND b."kind" = 'automatic' AND b."status" = 'in_progress'
                 AND b."deleted_at" IS NULL) THEN
        v_outcome := 'skipped_previous_running';
    ELSE
        SELECT c."id", c."action_id" INTO v_backup_id, v_action_id
        FROM backup_create_checked(p_server_id, v_server."account_id", v_server."status", p_name, p_description,
                                   NULL, NULL, 0, 'automatic', p_at) c;
        v_outcome := CASE WHEN v_backup_id IS NULL THEN 'skipped_server_busy' ELSE 'started' END;
    END IF;
    UPDATE "backup_runs" r SET "outcome" = v_outcome, "backup_id" = v_backup_id, "action_id" = v_action_id
    WHERE r."id" = v_run;
    IF p_late OR p_missed > 0 THEN
        PERFORM emit_event(v_server."account_id", 'backup_policy.missed',
            jsonb_build_object('server_id', p_server_id, 'run_id', v_run, 'slot_at', p_slot_at, 'late', p_late,
                               'missed_slots', p_missed, 'outcome', v_outcome));
    END IF;
    RETURN QUERY SELECT v_run, v_outcome, v_server."node_id", v_action_id, v_backup_id;
END $$;
