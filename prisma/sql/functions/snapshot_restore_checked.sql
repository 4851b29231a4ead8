-- Snapshot restore's rules. SnapshotRepository sends one statement that locks the snapshot's server row
-- (a FOR UPDATE subquery) and, for the locked row, calls this function through a LATERAL join; being
-- VOLATILE, its query reads from a snapshot taken after the lock is held (see snapshot_create_checked.sql)
-- and sees everything the previous holder committed (a restore, a delete, a create, a finished job).
--
-- The snapshot must be live (else 404); the rest of the rules, and the writes, are every restore's
-- (server_restore_checked.sql), given the snapshot's status. It returns what it found either way.
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
    )
    SELECT sn."id", sn."name", sn.status, sn."created_at", r.earlier_action_id, r.holding_id, r.holding_kind,
           r.holding_status, r.action_id
    FROM (SELECT 1 AS one) base
    LEFT JOIN snap sn ON true
    CROSS JOIN LATERAL server_restore_checked(p_server_id, p_account_id, p_server_status, 'restore_snapshot',
        p_snapshot_id, NULL, sn.status, p_token_id, p_key_id) r
$$;
