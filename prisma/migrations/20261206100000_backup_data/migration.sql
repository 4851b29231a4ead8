-- The backup data path's bookkeeping (src/backups/data): account data keys, wrapped by the master key,
-- and the references that decide when a content-addressed chunk may be removed from backup storage.
CREATE TABLE "account_keys" (
    "account_id" INTEGER NOT NULL,
    "key_id" BYTEA NOT NULL,
    "wrapped_key" BYTEA NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "account_keys_pkey" PRIMARY KEY ("account_id")
);

CREATE TABLE "backup_chunks" (
    "store" VARCHAR(64) NOT NULL,
    "account_id" INTEGER NOT NULL,
    "chunk_id" CHAR(64) NOT NULL,
    "size_bytes" BIGINT NOT NULL,
    "refs" INTEGER NOT NULL,
    "stored" BOOLEAN NOT NULL DEFAULT false,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "backup_chunks_pkey" PRIMARY KEY ("store","account_id","chunk_id"),
    CONSTRAINT "backup_chunks_refs_not_negative" CHECK ("refs" >= 0)
);

-- The garbage collector reads only unreferenced chunks.
CREATE INDEX "backup_chunks_unreferenced" ON "backup_chunks" ("store", "account_id", "chunk_id") WHERE "refs" = 0;

CREATE TABLE "backup_chunk_refs" (
    "backup_id" INTEGER NOT NULL,
    "store" VARCHAR(64) NOT NULL,
    "account_id" INTEGER NOT NULL,
    "chunk_id" CHAR(64) NOT NULL,

    CONSTRAINT "backup_chunk_refs_pkey" PRIMARY KEY ("backup_id","chunk_id")
);

ALTER TABLE "account_keys" ADD CONSTRAINT "account_keys_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "accounts"("id") ON DELETE CASCADE ON UPDATE CASCADE;

ALTER TABLE "backup_chunks" ADD CONSTRAINT "backup_chunks_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "accounts"("id") ON DELETE CASCADE ON UPDATE CASCADE;
