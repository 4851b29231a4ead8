-- Backup restore's rules. BackupRepository sends one statement that locks the TARGET server's row, then
-- the backup's row (both FOR UPDATE subqueries, in that order), and calls this VOLATILE function for them:
-- its query reads from a snapshot taken after both locks are held, so it sees every committed restore,
-- delete, create and finished job (see snapshot_create_checked.sql).
--
-- The backup must be live and of the target's account (else 404) and completed (not in progress, failed
-- or corrupt); the target must not be held by an open create or restore nor be restoring. Then the
-- target becomes `restoring` and a restore action is inserted, linked to the Idempotency-Key. An earlier
-- committed attempt of the same key request wins over every check but the 404.
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
    ), earlier AS (
        SELECT a."id" FROM "actions" a WHERE a."idempotency_key_id" = p_key_id
        ORDER BY a."id" ASC
        LIMIT 1
    ), holding AS (
        SELECT * FROM server_holding_action(p_server_id)
    ), ok AS (
        SELECT 1 AS one FROM bk
        WHERE bk.status = 'completed' AND NOT EXISTS (SELECT 1 FROM earlier)
          AND NOT EXISTS (SELECT 1 FROM holding) AND p_server_status <> 'restoring'
    ), srv AS (
        UPDATE "servers" SET "status" = 'restoring'
        WHERE "id" = p_server_id AND EXISTS (SELECT 1 FROM ok)
        RETURNING "id"
    ), act AS (
        INSERT INTO "actions" ("kind", "account_id", "server_id", "backup_id", "requested_by_token_id",
                               "server_status_before", "idempotency_key_id")
        SELECT 'restore_backup', p_account_id, p_server_id, p_backup_id, p_token_id, p_server_status, p_key_id
        FROM ok
        RETURNING "id"
    )
    SELECT b."id", b."name", b.status, b."created_at", e."id", h."id", h.kind, h.status,
           (SELECT "id" FROM act)
    FROM (SELECT 1 AS one) base
    LEFT JOIN bk b ON true
    LEFT JOIN earlier e ON true
    LEFT JOIN holding h ON true
$$;
