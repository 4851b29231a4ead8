-- Snapshot delete's rules, called as snapshot_restore_checked is (one statement, the server row locked
-- first, a fresh snapshot after the lock). The snapshot must be live (else 404), not protected against
-- deletion, not still being created and not being restored from. Then it is soft-deleted (it leaves every
-- list at once and frees its slot) and a delete action is inserted for the job that removes its storage.
-- The soft delete re-checks the protection on the row's latest version (a change of protection does not
-- take the server's lock), so a protection committed meanwhile refuses it too. It returns what it found
-- either way.
CREATE OR REPLACE FUNCTION "snapshot_delete_checked"(
    p_server_id INTEGER,
    p_account_id INTEGER,
    p_server_status "server_status",
    p_snapshot_id INTEGER,
    p_scope_account_id INTEGER,
    p_token_id INTEGER
) RETURNS TABLE (
    snapshot_id INTEGER,
    snapshot_status TEXT,
    restoring BOOLEAN,
    action_id INTEGER,
    protected BOOLEAN
) LANGUAGE sql VOLATILE AS $$
    WITH snap AS (
        SELECT s."id", s."status"::TEXT AS status, s."delete_protected" AS protected FROM "snapshots" s
        WHERE s."id" = p_snapshot_id AND s."server_id" = p_server_id AND s."deleted_at" IS NULL
          AND (p_scope_account_id IS NULL
               OR (s."account_id" = p_scope_account_id AND p_account_id = p_scope_account_id))
    ), restoring AS (
        SELECT EXISTS (
            SELECT 1 FROM "actions" a
            WHERE a."snapshot_id" = p_snapshot_id AND a."kind" = 'restore_snapshot'
              AND a."status" IN ('pending', 'running')
        ) AS yes
    ), ok AS (
        SELECT 1 AS one FROM snap
        WHERE snap.status <> 'in_progress' AND NOT snap.protected AND NOT (SELECT yes FROM restoring)
    ), gone AS (
        UPDATE "snapshots" SET "deleted_at" = clock_timestamp()
        WHERE "id" = p_snapshot_id AND NOT "delete_protected" AND EXISTS (SELECT 1 FROM ok)
        RETURNING "id"
    ), act AS (
        INSERT INTO "actions" ("kind", "account_id", "server_id", "snapshot_id", "requested_by_token_id",
                               "server_status_before")
        SELECT 'delete_snapshot', p_account_id, p_server_id, p_snapshot_id, p_token_id, p_server_status
        FROM gone
        RETURNING "id"
    )
    SELECT sn."id", sn.status, (SELECT yes FROM restoring), (SELECT "id" FROM act),
           sn.protected OR (EXISTS (SELECT 1 FROM ok) AND NOT EXISTS (SELECT 1 FROM gone))
    FROM (SELECT 1 AS one) base
    LEFT JOIN snap sn ON true
$$;
