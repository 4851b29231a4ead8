-- Snapshot create's rules: the per-server limit and "one long operation per server". A restore's
-- `pre_restore` safety copies take no slot.
--
-- SnapshotRepository sends one statement: it locks the server row (a FOR UPDATE subquery) and, for the
-- locked row, calls this function through a LATERAL join. The function is VOLATILE, so the planner never
-- inlines it and its query runs with a snapshot of its own, taken when it starts, that is after the lock
-- is held (PostgreSQL: "VOLATILE functions obtain a fresh snapshot at the start of each query they
-- execute"). Its checks therefore see everything the previous holder of the lock committed. The statement
-- is atomic (one implicit transaction) and holds the lock until it commits. The function checks the rules
-- and inserts snapshot and action only when all pass; it returns what it found either way, and the
-- service answers refusals with problem details.
CREATE OR REPLACE FUNCTION "snapshot_create_checked"(
    p_server_id INTEGER,
    p_account_id INTEGER,
    p_server_status "server_status",
    p_name VARCHAR,
    p_description VARCHAR,
    p_token_id INTEGER,
    p_key_id INTEGER,
    p_limit INTEGER,
    p_labels JSONB DEFAULT '{}'
) RETURNS TABLE (
    earlier_action_id INTEGER,
    earlier_snapshot_id INTEGER,
    holding_id INTEGER,
    holding_kind TEXT,
    holding_status TEXT,
    used INTEGER,
    action_id INTEGER,
    id INTEGER,
    name VARCHAR,
    description VARCHAR,
    status TEXT,
    progress SMALLINT,
    size_bytes BIGINT,
    consistency TEXT,
    error VARCHAR,
    created_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ
) LANGUAGE sql VOLATILE AS $$
    WITH chk AS (
        SELECT * FROM server_operation_check(p_server_id, p_server_status, p_key_id)
    ), slots AS (
        SELECT count(*)::INTEGER AS n FROM "snapshots" s
        WHERE s."server_id" = p_server_id AND s."deleted_at" IS NULL AND s."kind" = 'manual'
          AND s."status" IN ('in_progress', 'completed')
    ), ok AS (
        SELECT 1 AS one FROM chk WHERE chk.free AND (SELECT n FROM slots) < p_limit
    ), sn AS (
        INSERT INTO "snapshots" ("account_id", "server_id", "name", "description", "labels")
        SELECT p_account_id, p_server_id, p_name, p_description, p_labels FROM ok
        RETURNING "id", "name", "description", "status"::TEXT AS status, "progress", "size_bytes",
                  "consistency"::TEXT AS consistency, "error", "created_at", "completed_at"
    ), act AS (
        INSERT INTO "actions" ("kind", "account_id", "server_id", "snapshot_id", "requested_by_token_id",
                               "server_status_before", "idempotency_key_id")
        SELECT 'create_snapshot', p_account_id, p_server_id, sn."id", p_token_id, p_server_status, p_key_id
        FROM sn
        RETURNING "id"
    )
    SELECT c.earlier_action_id, c.earlier_snapshot_id, c.holding_id, c.holding_kind, c.holding_status,
           (SELECT n FROM slots), (SELECT "id" FROM act), sn."id", sn."name", sn."description", sn.status,
           sn."progress", sn."size_bytes", sn.consistency, sn."error", sn."created_at", sn."completed_at"
    FROM chk c
    LEFT JOIN sn ON true
$$;
