-- Backup delete's rules. BackupRepository sends one statement that locks the backup's row (FOR UPDATE)
-- and calls this VOLATILE function for it, whose query reads from a snapshot taken after the lock is
-- held: a restore from the backup locks the same row before it inserts its action, so a delete sees
-- every restore committed before it, and a restore sees the delete. The backup must not be protected
-- against deletion, in progress, nor being restored from. Then it is soft-deleted (it leaves every list at
-- once and frees its slot) and a delete action is inserted for the job that releases its data. The soft
-- delete re-checks the protection on the row's latest version, so a caller that did not lock the row is
-- refused too. It returns what it found either way.
CREATE OR REPLACE FUNCTION "backup_delete_checked"(
    p_backup_id INTEGER,
    p_token_id INTEGER
) RETURNS TABLE (
    backup_id INTEGER,
    backup_status TEXT,
    restoring BOOLEAN,
    action_id INTEGER,
    protected BOOLEAN
) LANGUAGE sql VOLATILE AS $$
    WITH bk AS (
        SELECT b."id", b."status"::TEXT AS status, b."account_id", b."server_id", v."status" AS server_status,
               b."delete_protected" AS protected
        FROM "backups" b JOIN "servers" v ON v."id" = b."server_id"
        WHERE b."id" = p_backup_id AND b."deleted_at" IS NULL
    ), restoring AS (
        SELECT EXISTS (
            SELECT 1 FROM "actions" a
            WHERE a."backup_id" = p_backup_id AND a."kind" = 'restore_backup'
              AND a."status" IN ('pending', 'running')
        ) AS yes
    ), ok AS (
        SELECT bk.* FROM bk
        WHERE bk.status <> 'in_progress' AND NOT bk.protected AND NOT (SELECT yes FROM restoring)
    ), gone AS (
        UPDATE "backups" SET "deleted_at" = clock_timestamp()
        WHERE "id" = p_backup_id AND NOT "delete_protected" AND EXISTS (SELECT 1 FROM ok)
        RETURNING "id"
    ), act AS (
        INSERT INTO "actions" ("kind", "account_id", "server_id", "backup_id", "requested_by_token_id",
                               "server_status_before")
        SELECT 'delete_backup', ok."account_id", ok."server_id", p_backup_id, p_token_id, ok.server_status
        FROM ok JOIN gone ON true
        RETURNING "id"
    )
    SELECT b."id", b.status, (SELECT yes FROM restoring), (SELECT "id" FROM act),
           b.protected OR (EXISTS (SELECT 1 FROM ok) AND NOT EXISTS (SELECT 1 FROM gone))
    FROM (SELECT 1 AS one) base
    LEFT JOIN bk b ON true
$$;
