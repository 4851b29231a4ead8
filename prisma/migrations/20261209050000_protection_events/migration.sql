-- A change of a snapshot's or a backup's delete protection reports itself as
-- `snapshot.protection_changed` / `backup.protection_changed`, carrying the protection it set: a trigger,
-- as for operation outcomes, so every statement that changes the column records its event in the same
-- transaction, and a statement that sets the value the row already has records none. The subject keeps
-- the new value because the event's body is rendered later, when the resource may have changed again.
CREATE FUNCTION "event_of_protection_change"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- TG_ARGV: the event type, then the subject's id member (`snapshot_id`, `backup_id`).
    PERFORM emit_event(NEW."account_id", TG_ARGV[0],
        jsonb_build_object(TG_ARGV[1], NEW."id", 'server_id', NEW."server_id",
                           'protection', jsonb_build_object('delete', NEW."delete_protected")));
    RETURN NULL;
END $$;

CREATE TRIGGER "snapshots_protection_event" AFTER UPDATE OF "delete_protected" ON "snapshots"
    FOR EACH ROW
    WHEN (OLD."delete_protected" IS DISTINCT FROM NEW."delete_protected")
    EXECUTE FUNCTION "event_of_protection_change"('snapshot.protection_changed', 'snapshot_id');

CREATE TRIGGER "backups_protection_event" AFTER UPDATE OF "delete_protected" ON "backups"
    FOR EACH ROW
    WHEN (OLD."delete_protected" IS DISTINCT FROM NEW."delete_protected")
    EXECUTE FUNCTION "event_of_protection_change"('backup.protection_changed', 'backup_id');
