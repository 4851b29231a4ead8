-- Undo of a restore: every restore first takes a `pre_restore` safety copy of the disk it replaces (a
-- backup when the node's backup store is configured, else a snapshot), kept until `expires_at`, linked
-- from the restore action; undo restores that copy (src/restore-undo).
CREATE TYPE "snapshot_kind" AS ENUM ('manual', 'pre_restore');

ALTER TABLE "snapshots" ADD COLUMN "kind" "snapshot_kind" NOT NULL DEFAULT 'manual';
ALTER TABLE "snapshots" ADD COLUMN "expires_at" TIMESTAMPTZ(3);

ALTER TYPE "backup_kind" ADD VALUE IF NOT EXISTS 'pre_restore';

ALTER TABLE "actions" ADD COLUMN "safety_snapshot_id" INTEGER;
ALTER TABLE "actions" ADD COLUMN "safety_backup_id" INTEGER;
ALTER TABLE "actions" ADD CONSTRAINT "actions_safety_snapshot_id_fkey" FOREIGN KEY ("safety_snapshot_id")
    REFERENCES "snapshots"("id") ON DELETE SET NULL ON UPDATE CASCADE;
ALTER TABLE "actions" ADD CONSTRAINT "actions_safety_backup_id_fkey" FOREIGN KEY ("safety_backup_id")
    REFERENCES "backups"("id") ON DELETE SET NULL ON UPDATE CASCADE;
-- One restore action per safety copy; and what an undo restores is found from the copy.
CREATE UNIQUE INDEX "actions_safety_snapshot_id_key" ON "actions"("safety_snapshot_id");
CREATE UNIQUE INDEX "actions_safety_backup_id_key" ON "actions"("safety_backup_id");

-- The sweeper's look for expired safety copies.
CREATE INDEX "snapshots_pre_restore_expires_at_idx" ON "snapshots"("expires_at")
    WHERE "kind" = 'pre_restore' AND "deleted_at" IS NULL;
