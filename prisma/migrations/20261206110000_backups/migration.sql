-- Backups and backup policies (prisma/schema.prisma: Backup, BackupPolicy) and the backup action kinds.
-- CreateEnum
CREATE TYPE "backup_kind" AS ENUM ('manual', 'automatic');

-- CreateEnum
CREATE TYPE "backup_status" AS ENUM ('in_progress', 'completed', 'failed', 'corrupt');

-- CreateEnum
CREATE TYPE "backup_mode" AS ENUM ('full', 'incremental');

-- CreateEnum
CREATE TYPE "backup_frequency" AS ENUM ('daily', 'weekly');

-- AlterEnum

ALTER TYPE "action_kind" ADD VALUE 'create_backup';
ALTER TYPE "action_kind" ADD VALUE 'restore_backup';
ALTER TYPE "action_kind" ADD VALUE 'delete_backup';

-- AlterTable
ALTER TABLE "actions" ADD COLUMN     "backup_id" INTEGER;

-- CreateTable
CREATE TABLE "backups" (
    "id" SERIAL NOT NULL,
    "account_id" INTEGER NOT NULL,
    "server_id" INTEGER NOT NULL,
    "name" VARCHAR(64) NOT NULL,
    "description" VARCHAR(1000) NOT NULL DEFAULT '',
    "kind" "backup_kind" NOT NULL DEFAULT 'manual',
    "status" "backup_status" NOT NULL DEFAULT 'in_progress',
    "progress" SMALLINT NOT NULL DEFAULT 0,
    "size_bytes" BIGINT,
    "stored_bytes" BIGINT,
    "consistency" "snapshot_consistency",
    "mode" "backup_mode",
    "mode_reason" VARCHAR(64),
    "checkpoint" VARCHAR(128),
    "store" VARCHAR(64),
    "error_code" VARCHAR(64),
    "error" VARCHAR(1000),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "completed_at" TIMESTAMPTZ(3),
    "expires_at" TIMESTAMPTZ(3),
    "verified_at" TIMESTAMPTZ(3),
    "deleted_at" TIMESTAMPTZ(3),

    CONSTRAINT "backups_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "backup_policies" (
    "server_id" INTEGER NOT NULL,
    "enabled" BOOLEAN NOT NULL DEFAULT false,
    "frequency" "backup_frequency" NOT NULL DEFAULT 'daily',
    "weekday" SMALLINT,
    "hour" SMALLINT NOT NULL DEFAULT 0,
    "retention_daily" SMALLINT NOT NULL DEFAULT 7,
    "retention_weekly" SMALLINT NOT NULL DEFAULT 4,
    "retention_monthly" SMALLINT NOT NULL DEFAULT 0,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "backup_policies_pkey" PRIMARY KEY ("server_id")
);

-- CreateIndex
CREATE INDEX "actions_backup_id_idx" ON "actions"("backup_id");

-- AddForeignKey
ALTER TABLE "backups" ADD CONSTRAINT "backups_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "accounts"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "backups" ADD CONSTRAINT "backups_server_id_fkey" FOREIGN KEY ("server_id") REFERENCES "servers"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey

-- AddForeignKey
ALTER TABLE "backup_policies" ADD CONSTRAINT "backup_policies_server_id_fkey" FOREIGN KEY ("server_id") REFERENCES "servers"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "actions" ADD CONSTRAINT "actions_backup_id_fkey" FOREIGN KEY ("backup_id") REFERENCES "backups"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- The live backups of an account and of a server, newest first (the list's pages and counts), and the
-- server's manual slots (backup_create_checked).
CREATE INDEX "backups_account_live_idx" ON "backups" ("account_id", "created_at" DESC, "id" DESC) WHERE "deleted_at" IS NULL;
CREATE INDEX "backups_server_live_idx" ON "backups" ("server_id", "created_at" DESC, "id" DESC) WHERE "deleted_at" IS NULL;
