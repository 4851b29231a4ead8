-- The sweeper's look for expired safety backups (a new enum value is usable only after the migration
-- that added it committed).
CREATE INDEX "backups_pre_restore_expires_at_idx" ON "backups"("expires_at")
    WHERE "kind" = 'pre_restore' AND "deleted_at" IS NULL;
