-- Retention's delete of one automatic backup (src/backup-schedule/backup-scheduler.ts). It locks the
-- backup's row only if it is a live `automatic` backup of the given server, then goes through the
-- customer's delete (backup_delete_checked: never one protected, in progress or being restored from;
-- soft delete and a delete_backup action whose job releases its chunks), and, when that deleted it, records the
-- event backup.pruned and the audit event in the same transaction. A manual backup is never touched:
-- the lock finds no row.
CREATE OR REPLACE FUNCTION "backup_prune_checked"(
    p_backup_id INTEGER,
    p_server_id INTEGER,
    p_at TIMESTAMPTZ
) RETURNS TABLE (
    node_id INTEGER,
    action_id INTEGER
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_backup RECORD;
    v_deleted RECORD;
BEGIN
    SELECT b."id", b."account_id", b."created_at", s."node_id" INTO v_backup
    FROM "backups" b JOIN "servers" s ON s."id" = b."server_id"
    WHERE b."id" = p_backup_id AND b."server_id" = p_server_id AND b."kind" = 'automatic'
      AND b."deleted_at" IS NULL
    FOR UPDATE OF b;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT * INTO v_deleted FROM backup_delete_checked(p_backup_id, NULL);
    IF v_deleted."action_id" IS NULL THEN
        RETURN;
    END IF;
    PERFORM emit_event(v_backup."account_id", 'backup.pruned',
        jsonb_build_object('backup_id', p_backup_id, 'server_id', p_server_id, 'action_id', v_deleted."action_id",
                           'backup_created_at', v_backup."created_at"));
    INSERT INTO "audit_events" ("at", "account_id", "actor", "action", "target_type", "target_id", "outcome", "detail")
    VALUES (p_at, v_backup."account_id", 'scheduler', 'backup.prune', 'backup', p_backup_id, 'accepted',
            jsonb_build_object('server_id', p_server_id, 'action_id', v_deleted."action_id"));
    RETURN QUERY SELECT v_backup."node_id", v_deleted."action_id";
END $$;
