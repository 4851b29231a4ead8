-- A power action that ends reports `power_action.completed` or `power_action.failed` (its action says
-- which kind). A migration of its own: the new enum values cannot be used in the transaction that adds
-- them. The rest of the function is as migration 20261207000000_events wrote it.
CREATE OR REPLACE FUNCTION "event_of_action_outcome"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_subject TEXT;
    v_type TEXT;
BEGIN
    v_subject := CASE NEW."kind"
        WHEN 'create_snapshot' THEN 'snapshot'
        WHEN 'create_backup' THEN 'backup'
        WHEN 'restore_snapshot' THEN 'restore'
        WHEN 'restore_backup' THEN 'restore'
        WHEN 'start_server' THEN 'power_action'
        WHEN 'stop_server' THEN 'power_action'
        WHEN 'shutdown_server' THEN 'power_action'
        WHEN 'reboot_server' THEN 'power_action'
    END;
    IF v_subject IS NULL THEN
        RETURN NULL;
    END IF;
    v_type := v_subject || CASE NEW."status" WHEN 'succeeded' THEN '.completed' ELSE '.failed' END;
    INSERT INTO "events" ("account_id", "type", "subject", "created_at")
    VALUES (NEW."account_id", v_type,
            jsonb_strip_nulls(jsonb_build_object('action_id', NEW."id", 'server_id', NEW."server_id",
                                                 'snapshot_id', NEW."snapshot_id", 'backup_id', NEW."backup_id")),
            COALESCE(NEW."finished_at", CURRENT_TIMESTAMP));
    RETURN NULL;
END $$;
