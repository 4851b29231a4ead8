-- Automatic backups (src/backup-schedule): one row per server and due slot, and the verify action kind.
ALTER TYPE "action_kind" ADD VALUE 'verify_backup';

-- CreateTable
CREATE TABLE "backup_runs" (
    "id" SERIAL NOT NULL,
    "server_id" INTEGER NOT NULL,
    "account_id" INTEGER NOT NULL,
    "slot_at" TIMESTAMPTZ(3) NOT NULL,
    "ran_at" TIMESTAMPTZ(3) NOT NULL,
    "late" BOOLEAN NOT NULL DEFAULT false,
    "missed_slots" INTEGER NOT NULL DEFAULT 0,
    "outcome" VARCHAR(32) NOT NULL,
    "backup_id" INTEGER,
    "action_id" INTEGER,

    CONSTRAINT "backup_runs_pkey" PRIMARY KEY ("id")
);

-- The exactly-once key: a slot of a server gets one run, whichever scheduler gets there first.
CREATE UNIQUE INDEX "backup_runs_server_id_slot_at_key" ON "backup_runs"("server_id", "slot_at");

ALTER TABLE "backup_runs" ADD CONSTRAINT "backup_runs_server_id_fkey" FOREIGN KEY ("server_id") REFERENCES "servers"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- The schedule counts from when the policy was last written (a slot before that is not owed).
ALTER TABLE "backup_policies" ADD COLUMN "schedule_since" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP;
