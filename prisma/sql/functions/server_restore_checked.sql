-- A restore's rules for its target server, whether it restores from a snapshot or from a backup.
--
-- The source (p_snapshot_id or p_backup_id, with its status as the caller found it; NULL when there is
-- none) must be completed and the server free (server_operation_check: not held by an open create or
-- restore, not restoring). Then the server becomes `restoring` and the restore action (p_kind) is
-- inserted, linked to the Idempotency-Key. An earlier committed attempt of the same key request wins
-- over every check: nothing is written and it is returned. It returns what it found either way.
--
-- Called by snapshot_restore_checked and backup_restore_checked from inside their queries, which run
-- with the server's row lock held; being VOLATILE (it writes), its query reads from a snapshot of its
-- own taken then, after the lock.
CREATE OR REPLACE FUNCTION "server_restore_checked"(
    p_server_id INTEGER,
    p_account_id INTEGER,
    p_server_status "server_status",
    p_kind "action_kind",
    p_snapshot_id INTEGER,
    p_backup_id INTEGER,
    p_source_status TEXT,
    p_token_id INTEGER,
    p_key_id INTEGER
) RETURNS TABLE (
    earlier_action_id INTEGER,
    holding_id INTEGER,
    holding_kind TEXT,
    holding_status TEXT,
    action_id INTEGER
) LANGUAGE sql VOLATILE AS $$
    WITH chk AS (
        SELECT * FROM server_operation_check(p_server_id, p_server_status, p_key_id)
    ), ok AS (
        SELECT 1 AS one FROM chk WHERE chk.free AND p_source_status = 'completed'
    ), srv AS (
        UPDATE "servers" SET "status" = 'restoring'
        WHERE "id" = p_server_id AND EXISTS (SELECT 1 FROM ok)
        RETURNING "id"
    ), act AS (
        INSERT INTO "actions" ("kind", "account_id", "server_id", "snapshot_id", "backup_id",
                               "requested_by_token_id", "server_status_before", "idempotency_key_id")
        SELECT p_kind, p_account_id, p_server_id, p_snapshot_id, p_backup_id, p_token_id, p_server_status,
               p_key_id
        FROM ok
        RETURNING "id"
    )
    SELECT c.earlier_action_id, c.holding_id, c.holding_kind, c.holding_status, (SELECT "id" FROM act)
    FROM chk c
$$;
