-- Snapshot restore's rules. SnapshotRepository sends one statement that locks the snapshot's server row
-- (a FOR UPDATE subquery) and, for the locked row, calls this function through a LATERAL join; being
-- VOLATILE, its query reads from a snapshot taken after the lock is held (see snapshot_create_checked.sql)
-- and sees everything the previous holder committed (a restore, a delete, a create, a finished job).
--
-- The snapshot must be live (else 404) and completed; the server must not be held by an open create or
-- restore nor be restoring. Then the server becomes `restoring` and a restore action is inserted, linked
-- to the Idempotency-Key. An earlier committed attempt of the same key request wins over every check but
-- the 404 (its retry answers what the first attempt did). It returns what it found either way.
CREATE OR REPLACE FUNCTION "snapshot_restore_checked"(
    p_server_id INTEGER,
    p_account_id INTEGER,
    p_server_status "server_status",
    p_snapshot_id INTEGER,
    p_scope_account_id INTEGER,
    p_token_id INTEGER,
    p_key_id INTEGER
) RETURNS TABLE (
    snapshot_id INTEGER,
    snapshot_name VARCHAR,
    snapshot_status TEXT,
    snapshot_created_at TIMESTAMPTZ,
    earlier_action_id INTEGER,
    holding_id INTEGER,
    holding_kind TEXT,
    holding_status TEXT,
    action_id INTEGER
) LANGUAGE sql VOLATILE AS $$
    WITH snap AS (
        SELECT s."id", s."name", s."status"::TEXT AS status, s."created_at" FROM "snapshots" s
        WHERE s."id" = p_snapshot_id AND s."server_id" = p_server_id AND s."deleted_at" IS NULL
          AND (p_scope_account_id IS NULL
               OR (s."account_id" = p_scope_account_id AND p_account_id = p_scope_account_id))
    ), earlier AS (
        -- An earlier attempt of this Idempotency-Key request that committed its action.
        SELECT a."id" FROM "actions" a WHERE a."idempotency_key_id" = p_key_id
        ORDER BY a."id" ASC
        LIMIT 1
    ), holding AS (
        -- The open create or restore, of a snapshot or a backup, that holds the server.
        SELECT * FROM server_holding_action(p_server_id)
    ), ok AS (
        SELECT 1 AS one FROM snap
        WHERE snap.status = 'completed' AND NOT EXISTS (SELECT 1 FROM earlier)
          AND NOT EXISTS (SELECT 1 FROM holding) AND p_server_status <> 'restoring'
    ), srv AS (
        UPDATE "servers" SET "status" = 'restoring'
        WHERE "id" = p_server_id AND EXISTS (SELECT 1 FROM ok)
        RETURNING "id"
    ), act AS (
        INSERT INTO "actions" ("kind", "account_id", "server_id", "snapshot_id", "requested_by_token_id",
                               "server_status_before", "idempotency_key_id")
        SELECT 'restore_snapshot', p_account_id, p_server_id, p_snapshot_id, p_token_id, p_server_status,
               p_key_id
        FROM ok
        RETURNING "id"
    )
    SELECT sn."id", sn."name", sn.status, sn."created_at", e."id", h."id", h.kind, h.status,
           (SELECT "id" FROM act)
    FROM (SELECT 1 AS one) base
    LEFT JOIN snap sn ON true
    LEFT JOIN earlier e ON true
    LEFT JOIN holding h ON true
$$;
