-- API token creation under a cap of live tokens per account, in one statement without an interactive
-- transaction: `api_token_create_checked`.
--
-- This migration first created that function. Its one source is now
-- prisma/sql/functions/api_token_create_checked.sql, which prisma/migrate.mjs (`npm run migrate`) applies
-- after the migrations, so a rule change edits that file and nothing else (see docs/operations.md).
-- Hand-written: Prisma does not model functions or partial indexes.

-- The count reads only unrevoked tokens, however many revoked ones an account has gathered.
CREATE INDEX "api_tokens_account_id_unrevoked_idx" ON "api_tokens" ("account_id") WHERE "revoked_at" IS NULL;
