-- The sweeper's removal of one expired restore safety copy (src/restore-undo/safety-copy-sweeper.ts):
-- a `pre_restore` snapshot or backup whose `expires_at` is at or before p_at. It locks the copy's server
-- row, then the copy's row, only if the copy is still a live expired `pre_restore` one, then goes
-- through the customer's delete (snapshot_delete_checked / backup_delete_checked: never one being
-- restored from, i.e. an undo running; soft delete and a delete action whose job removes its data),
-- and records the audit event in the same transaction. Returns the node and the delete action, or no row.
CREATE OR REPLACE FUNCTION "safety_copy_expire"(
    p_type TEXT,
    p_id INTEGER,
    p_at TIMESTAMPTZ
) RETURNS TABLE (
    node_id INTEGER,
    action_id INTEGER
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_server RECORD;
    v_action INTEGER;
BEGIN
    SELECT s."id", s."account_id", s."status", s."node_id" INTO v_server
    FROM "servers" s
    WHERE s."id" = CASE p_type
        WHEN 'snapshot' THEN (SELECT "server_id" FROM "snapshots" WHERE "id" = p_id)
        ELSE (SELECT "server_id" FROM "backups" WHERE "id" = p_id) END
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF p_type = 'snapshot' THEN
        PERFORM 1 FROM "snapshots"
        WHERE "id" = p_id AND "kind" = 'pre_restore' AND "deleted_at" IS NULL AND "expires_at" <= p_at
        FOR UPDATE;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        SELECT d."action_id" INTO v_action
        FROM snapshot_delete_checked(v_server."id", v_server."account_id", v_server."status", p_id, NULL, NULL) d;
    ELSE
        PERFORM 1 FROM "backups"
        WHERE "id" = p_id AND "kind" = 'pre_restore' AND "deleted_at" IS NULL AND "expires_at" <= p_at
        FOR UPDATE;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        SELECT d."action_id" INTO v_action FROM backup_delete_checked(p_id, NULL) d;
    END IF;
    IF v_action IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO "audit_events" ("at", "account_id", "actor", "action", "target_type", "target_id", "outcome", "detail")
    VALUES (p_at, v_server."account_id", 'sweeper', 'safety_copy.expire', p_type, p_id, 'accepted',
            jsonb_build_object('server_id', v_server."id", 'action_id', v_action));
    RETURN QUERY SELECT v_server."node_id", v_action;
END $$;
