-- The outbox of account events (see model Event). Operation outcomes are written by a trigger on
-- actions, so every path that ends an action — the worker's batched statements, the reaper, recovery —
-- records its event in the same transaction, without knowing about events.
CREATE TABLE "events" (
    "id" BIGSERIAL NOT NULL,
    "account_id" INTEGER NOT NULL,
    "type" VARCHAR(64) NOT NULL,
    "subject" JSONB NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "events_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "events_account_id_id_idx" ON "events"("account_id", "id");

ALTER TABLE "events" ADD CONSTRAINT "events_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "accounts"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- An action that ends (succeeded or failed) reports what its kind is about: a snapshot or backup
-- created, a restore. Deletes report nothing here (a backup removed by retention says so itself, as
-- backup.pruned, through emit_event).
CREATE FUNCTION "event_of_action_outcome"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_subject TEXT;
    v_type TEXT;
BEGIN
    v_subject := CASE NEW."kind"
        WHEN 'create_snapshot' THEN 'snapshot'
        WHEN 'create_backup' THEN 'backup'
        WHEN 'restore_snapshot' THEN 'restore'
        WHEN 'restore_backup' THEN 'restore'
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

CREATE TRIGGER "actions_outcome_event" AFTER UPDATE OF "status" ON "actions"
    FOR EACH ROW
    WHEN (OLD."status" IN ('pending', 'running') AND NEW."status" IN ('succeeded', 'failed'))
    EXECUTE FUNCTION "event_of_action_outcome"();
