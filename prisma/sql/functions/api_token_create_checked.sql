-- API token creation under a cap of live tokens per account.
--
-- ApiTokenService.create sends one statement: it locks the account row (a FOR NO KEY UPDATE subquery,
-- which serialises token creations of the account without blocking the foreign-key checks of its other
-- writes) and, for the locked row, calls this function through a LATERAL join. The function is VOLATILE,
-- so its query runs with a snapshot of its own taken after the lock is held: it counts every token the
-- previous holder of the lock committed. It inserts the token only while the account has fewer than
-- p_limit live (unrevoked, unexpired at p_now) tokens; p_limit NULL means no cap (the operator CLI). It
-- returns the count either way, and the new row when it made one.
CREATE OR REPLACE FUNCTION "api_token_create_checked"(
    p_account_id INTEGER,
    p_name VARCHAR,
    p_prefix VARCHAR,
    p_hash CHAR(64),
    p_scopes TEXT[],
    p_expires_at TIMESTAMPTZ,
    p_now TIMESTAMPTZ,
    p_limit INTEGER
) RETURNS TABLE (
    used INTEGER,
    id INTEGER,
    name VARCHAR,
    prefix VARCHAR,
    scopes TEXT[],
    expires_at TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ
) LANGUAGE sql VOLATILE AS $$
    WITH live AS (
        SELECT count(*)::INTEGER AS n FROM "api_tokens" t
        WHERE t."account_id" = p_account_id AND t."revoked_at" IS NULL
          AND (t."expires_at" IS NULL OR t."expires_at" > p_now)
    ), made AS (
        INSERT INTO "api_tokens" ("account_id", "name", "prefix", "hash", "scopes", "expires_at")
        SELECT p_account_id, p_name, p_prefix, p_hash, p_scopes, p_expires_at FROM live
        WHERE p_limit IS NULL OR live.n < p_limit
        RETURNING "id", "name", "prefix", "scopes", "expires_at", "last_used_at", "revoked_at", "created_at"
    )
    SELECT live.n, m."id", m."name", m."prefix", m."scopes", m."expires_at", m."last_used_at",
           m."revoked_at", m."created_at"
    FROM live
    LEFT JOIN made m ON true
$$;
