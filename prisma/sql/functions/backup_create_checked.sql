-- Backup create's rules: the per-server limit of manual backups and "one long operation per server".
--
-- Called as snapshot_create_checked is (see that file): BackupRepository sends one statement that locks
-- the server row and, for the locked row, calls this VOLATILE function, whose query reads from a snapshot
-- taken after the lock is held. Live manual backups that are in progress, completed or corrupt take a
-- slot; failed, deleted and automatic ones do not. It inserts backup and action only when every rule
-- passes and returns what it found either way. `p_kind` 'automatic' is the scheduler's create
-- (src/backup-schedule): the same rules but the manual limit; `p_at` its clock's time (null: now). The
-- API's manual create leaves both to their defaults.
CREATE OR REPLACE FUNCTION "backup_create_checked"(
    p_server_id INTEGER,
    p_account_id INTEGER,
    p_server_status "server_status",
    p_name VARCHAR,
    p_description VARCHAR,
    p_token_id INTEGER,
    p_key_id INTEGER,
    p_limit INTEGER,
    p_kind "backup_kind" DEFAULT 'manual',
    p_at TIMESTAMPTZ DEFAULT NULL,
    p_labels JSONB DEFAULT '{}'
) RETURNS TABLE (
    earlier_action_id INTEGER,
    earlier_backup_id INTEGER,
    holding_id INTEGER,
    holding_kind TEXT,
    holding_status TEXT,
    used INTEGER,
    action_id INTEGER,
    id INTEGER
) LANGUAGE sql VOLATILE AS $$
    WITH chk AS (
        SELECT * FROM server_operation_check(p_server_id, p_server_status, p_key_id)
    ), slots AS (
        SELECT count(*)::INTEGER AS n FROM "backups" b
        WHERE b."server_id" = p_server_id AND b."deleted_at" IS NULL AND b."kind" = 'manual'
          AND b."status" IN ('in_progress', 'completed', 'corrupt')
    ), ok AS (
        SELECT 1 AS one FROM chk WHERE chk.free AND (p_kind = 'automatic' OR (SELECT n FROM slots) < p_limit)
    ), bk AS (
        INSERT INTO "backups" ("account_id", "server_id", "name", "description", "kind", "created_at", "labels")
        SELECT p_account_id, p_server_id, p_name, p_description, p_kind, COALESCE(p_at, CURRENT_TIMESTAMP), p_labels
        FROM ok
        RETURNING "id"
    ), act AS (
        INSERT INTO "actions" ("kind", "account_id", "server_id", "backup_id", "requested_by_token_id",
                               "server_status_before", "idempotency_key_id")
        SELECT 'create_backup', p_account_id, p_server_id, bk."id", p_token_id, p_server_status, p_key_id
        FROM bk
        RETURNING "id"
    )
    SELECT c.earlier_action_id, c.earlier_backup_id, c.holding_id, c.holding_kind, c.holding_status,
           (SELECT n FROM slots), (SELECT "id" FROM act), (SELECT "id" FROM bk)
    FROM chk c
$$;
