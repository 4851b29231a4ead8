-- One open create or restore per server, whether of a snapshot or of a backup; deletes of either run in
-- the background and hold nothing. A migration of its own: a new enum value cannot be used in the
-- transaction that adds it. The same set of background kinds is named in
-- prisma/sql/functions/server_holding_action.sql.
DROP INDEX "actions_one_open_per_server";
CREATE UNIQUE INDEX "actions_one_open_per_server" ON "actions" ("server_id") WHERE "status" IN ('pending', 'running') AND "kind" NOT IN ('delete_snapshot', 'delete_backup');
