-- The label indexes lead with the account (btree_gin's integer operator class beside jsonb_path_ops in
-- one GIN index): a customer's `label_selector` list is scoped to their account, and a GIN index
-- intersects the account's posting list with the selector's equality terms, so the count and the page
-- visit only the rows that match both instead of rechecking the labels of every row the account has.
-- An admin's list (no account) uses the labels column of the same index alone. Selectors with only
-- negative terms (`!temp`, `env!=dev`) have nothing to look up and still read the account's rows.
-- docs/benchmarks.md, "Label selectors", has the plans and figures.
-- btree_gin is a trusted extension (PostgreSQL 13+): a database owner without superuser can create it.
CREATE EXTENSION IF NOT EXISTS btree_gin;

DROP INDEX "servers_labels_idx";
DROP INDEX "snapshots_labels_idx";
DROP INDEX "backups_labels_idx";

CREATE INDEX "servers_labels_idx" ON "servers" USING GIN ("account_id", "labels" jsonb_path_ops);
CREATE INDEX "snapshots_labels_idx" ON "snapshots" USING GIN ("account_id", "labels" jsonb_path_ops) WHERE "deleted_at" IS NULL;
CREATE INDEX "backups_labels_idx" ON "backups" USING GIN ("account_id", "labels" jsonb_path_ops) WHERE "deleted_at" IS NULL;
