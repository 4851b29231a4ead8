-- A power action's rules (start, stop, shutdown, reboot: p_kind). ServerPowerService sends one statement
-- that locks the server row (a FOR UPDATE subquery) and, for the locked row, calls this function through
-- a LATERAL join; being VOLATILE, its query reads from a snapshot taken after the lock is held (see
-- snapshot_create_checked.sql).
--
-- The server must be free (server_operation_check: no open create, restore or power action holds it,
-- not restoring); then the action is inserted, linked to the Idempotency-Key. An earlier committed
-- attempt of the same key request wins over every check: nothing is written and it is returned. The
-- server's status is left as it is: the action holds the server, and the worker writes what the domain
-- became when it ends. It returns what it found either way.
CREATE OR REPLACE FUNCTION "server_power_checked"(
    p_server_id INTEGER,
    p_account_id INTEGER,
    p_server_status "server_status",
    p_kind "action_kind",
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
    ), act AS (
        INSERT INTO "actions" ("kind", "account_id", "server_id", "requested_by_token_id",
                               "server_status_before", "idempotency_key_id")
        SELECT p_kind, p_account_id, p_server_id, p_token_id, p_server_status, p_key_id
        FROM chk WHERE chk.free
        RETURNING "id"
    )
    SELECT c.earlier_action_id, c.holding_id, c.holding_kind, c.holding_status, (SELECT "id" FROM act)
    FROM chk c
$$;
