-- Backup restore's rules. BackupRepository sends one statement that locks the TARGET server's row, then
-- the backup's row (both FOR UPDATE subqueries, in that order), and calls this VOLATILE function for them:
-- its query reads from a snapshot taken after both locks are held, so it sees every committed restore,
-- delete, create and finished job (see snapshot_create_checked.sql).
--
-- The backup must be live and of the target's account (else 404); the rest of the rules (the backup
-- completed: not in progress, failed or corrupt), and the writes, are every restore's
-- (server_restore_checked.sql), for the target. It returns what it found either way.
CREATE OR REPLACE FUNCTION "backup_restore_checked"(
    p_server_id INTEGER,
    p_account_id INTEGER,
    p_server_status "server_status",
    p_backup_id INTEGER,
    p_token_id INTEGER,
    p_key_id INTEGER
) RETURNS TABLE (
    backup_id INTEGER,
    backup_name VARCHAR,
    backup_status TEXT,
    backup_created_at TIMESTAMPTZ,
    earlier_action_id INTEGER,
    holding_id INTEGER,
    holding_kind TEXT,
    holding_status TEXT,
    action_id INTEGER
) LANGUAGE sql VOLATILE AS $$
    WITH bk AS (
        SELECT b."id", b."name", b."status"::TEXT AS status, b."created_at" FROM "backups" b
        WHERE b."id" = p_backup_id AND b."account_id" = p_account_id AND b."deleted_at" IS NULL
    )
    SELECT b."id", b."name", b.status, b."created_at", r.earlier_action_id, r.holding_id, r.holding_kind,
           r.holding_status, r.action_id
    FROM (SELECT 1 AS one) base
    LEFT JOIN bk b ON true
    CROSS JOIN LATERAL server_restore_checked(p_server_id, p_account_id, p_server_status, 'restore_backup',
        NULL, p_backup_id, b.status, p_token_id, p_key_id) r
$$;
