-- Each node names the backup store its backups go to (a name from configuration: BACKUP_DIR is
-- "default", BACKUP_STORES the others). Locations and secrets stay in configuration, never here.
ALTER TABLE "nodes" ADD COLUMN "backup_store" VARCHAR(64) NOT NULL DEFAULT 'default';
