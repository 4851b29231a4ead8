-- A verification reads a backup's stored data and holds no server: like deletes, it is a background kind
-- (prisma/sql/functions/server_holding_action.sql names the same set). A migration of its own: a new
-- enum value cannot be used in the transaction that adds it. One open verification per backup.
DROP INDEX "actions_one_open_per_server";
CREATE UNIQUE INDEX "actions_one_open_per_server" ON "actions" ("server_id") WHERE "status" IN ('pending', 'running') AND "kind" NOT IN ('delete_snapshot', 'delete_backup', 'verify_backup');
CREATE UNIQUE INDEX "actions_one_open_verify_per_backup" ON "actions" ("backup_id") WHERE "status" IN ('pending', 'running') AND "kind" = 'verify_backup';

-- backup_create_checked gains the backup's kind and time (automatic backups are created by the scheduler).
DROP FUNCTION IF EXISTS "backup_create_checked"(INTEGER, INTEGER, "server_status", VARCHAR, VARCHAR, INTEGER, INTEGER, INTEGER);
