-- Whether a long operation (a create or a restore, of a snapshot or a backup) may start on the server
-- now, and what stands in its way. The server is free when no earlier attempt of this Idempotency-Key
-- request committed an action (idempotency_key_action: the retry answers with that action instead), no
-- open create or restore holds it (server_holding_action) and it is not being restored.
--
-- Called by the create and restore functions from inside their own queries, so it reads from the
-- snapshot their query took after the server's lock was held (a STABLE function takes no snapshot of
-- its own).
CREATE OR REPLACE FUNCTION "server_operation_check"(
    p_server_id INTEGER,
    p_server_status "server_status",
    p_key_id INTEGER
) RETURNS TABLE (
    earlier_action_id INTEGER,
    earlier_snapshot_id INTEGER,
    earlier_backup_id INTEGER,
    holding_id INTEGER,
    holding_kind TEXT,
    holding_status TEXT,
    free BOOLEAN
) LANGUAGE sql STABLE AS $$
    SELECT e."id", e."snapshot_id", e."backup_id", h."id", h.kind, h.status,
           e."id" IS NULL AND h."id" IS NULL AND p_server_status <> 'restoring'
    FROM (SELECT 1 AS one) base
    LEFT JOIN idempotency_key_action(p_key_id) e ON true
    LEFT JOIN server_holding_action(p_server_id) h ON true
$$;
