-- Delete protection on snapshots and backups: while `delete_protected` is true every path that deletes
-- refuses the row. The delete functions (snapshot_delete_checked, backup_delete_checked, and through it
-- backup_prune_checked) check it and say so; the CHECK constraint is the backstop for any other SQL: a
-- row can never be both protected and deleted. Added NOT VALID and then validated, so the scan of an
-- existing table does not block writes to it.
ALTER TABLE "snapshots" ADD COLUMN "delete_protected" BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE "snapshots" ADD CONSTRAINT "snapshots_protected_not_deleted"
    CHECK (NOT ("delete_protected" AND "deleted_at" IS NOT NULL)) NOT VALID;
ALTER TABLE "snapshots" VALIDATE CONSTRAINT "snapshots_protected_not_deleted";

ALTER TABLE "backups" ADD COLUMN "delete_protected" BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE "backups" ADD CONSTRAINT "backups_protected_not_deleted"
    CHECK (NOT ("delete_protected" AND "deleted_at" IS NOT NULL)) NOT VALID;
ALTER TABLE "backups" VALIDATE CONSTRAINT "backups_protected_not_deleted";

-- Both delete functions gain the result column `protected` (CREATE OR REPLACE cannot change result
-- columns; prisma/migrate.mjs creates them again from their files).
DROP FUNCTION IF EXISTS "snapshot_delete_checked"(INTEGER, INTEGER, "server_status", INTEGER, INTEGER, INTEGER);
DROP FUNCTION IF EXISTS "backup_delete_checked"(INTEGER, INTEGER);
