-- "One long operation per server": the open create or restore, of a snapshot or of a backup, that holds
-- the server, if any. Deletes of either and backup verifications run in the background and hold nothing;
-- the partial unique index actions_one_open_per_server (migration 20261207070001_backup_verify_hold) names
-- the same kinds.
--
-- Called through server_operation_check from inside the *_checked functions' queries, so it reads from
-- the snapshot their query took after the server's lock was held (a STABLE function takes no snapshot of
-- its own).
CREATE OR REPLACE FUNCTION "server_holding_action"(
    p_server_id INTEGER
) RETURNS TABLE (
    id INTEGER,
    kind TEXT,
    status TEXT
) LANGUAGE sql STABLE AS $$
    SELECT a."id", a."kind"::TEXT, a."status"::TEXT FROM "actions" a
    WHERE a."server_id" = p_server_id AND a."status" IN ('pending', 'running')
      AND a."kind" NOT IN ('delete_snapshot', 'delete_backup', 'verify_backup')
    ORDER BY a."id" ASC
    LIMIT 1
$$;
