-- Labels on servers, snapshots and backups: a jsonb object of string keys and values (the rules are the
-- API's, src/labels/labels.ts). Lists filter them with `label_selector`, compiled to one jsonpath
-- predicate (`labels @@ $n::jsonpath`), whose equality terms a GIN index answers; jsonb_path_ops is
-- smaller and faster for those than the default operator class (docs/benchmarks.md, "Label selectors").
-- The snapshot and backup indexes skip deleted rows, as every list does.
ALTER TABLE "servers" ADD COLUMN "labels" JSONB NOT NULL DEFAULT '{}';
ALTER TABLE "snapshots" ADD COLUMN "labels" JSONB NOT NULL DEFAULT '{}';
ALTER TABLE "backups" ADD COLUMN "labels" JSONB NOT NULL DEFAULT '{}';

CREATE INDEX "servers_labels_idx" ON "servers" USING GIN ("labels" jsonb_path_ops);
CREATE INDEX "snapshots_labels_idx" ON "snapshots" USING GIN ("labels" jsonb_path_ops) WHERE "deleted_at" IS NULL;
CREATE INDEX "backups_labels_idx" ON "backups" USING GIN ("labels" jsonb_path_ops) WHERE "deleted_at" IS NULL;

-- The creates take the new resource's labels: a new last argument (prisma/sql/functions), so the old
-- signatures go first (CREATE OR REPLACE cannot change arguments).
DROP FUNCTION IF EXISTS "snapshot_create_checked"(INTEGER, INTEGER, "server_status", VARCHAR, VARCHAR, INTEGER, INTEGER, INTEGER);
DROP FUNCTION IF EXISTS "backup_create_checked"(INTEGER, INTEGER, "server_status", VARCHAR, VARCHAR, INTEGER, INTEGER, INTEGER, "backup_kind", TIMESTAMPTZ);
