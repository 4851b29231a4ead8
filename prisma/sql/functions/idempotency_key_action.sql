-- The action an earlier attempt of this Idempotency-Key request committed, if any (a NULL key has none).
-- A key is bound to one request (its fingerprint covers method, route and body) and a request makes at
-- most one action, so this is the action a retry answers with: the create's snapshot or backup, or the
-- restore it began.
--
-- Called through server_operation_check from inside the *_checked functions' queries, so it reads from
-- the snapshot their query took after the server's lock was held (a STABLE function takes no snapshot of
-- its own).
CREATE OR REPLACE FUNCTION "idempotency_key_action"(
    p_key_id INTEGER
) RETURNS TABLE (
    id INTEGER,
    snapshot_id INTEGER,
    backup_id INTEGER
) LANGUAGE sql STABLE AS $$
    SELECT a."id", a."snapshot_id", a."backup_id" FROM "actions" a
    WHERE a."idempotency_key_id" = p_key_id
    ORDER BY a."id" ASC
    LIMIT 1
$$;
