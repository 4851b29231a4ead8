import { Injectable } from '@nestjs/common';
import { PrismaService } from '../../prisma/prisma.service';
import { forEachLimited } from '../../common/for-each-limited';

/**
 * Which backups hold which chunks, in Postgres, and the one garbage collector that removes chunks no
 * backup holds. The discipline that never loses a chunk a live or in-progress backup needs:
 *
 * - A writer first takes its reference (`acquire`: a backup_chunk_refs row and refs + 1 on the chunk
 *   row, inserting it when missing) and only then uploads, when the row is not yet `stored`; it marks
 *   the row `stored` once the store's `sync` made the object durable (until then another writer of
 *   the same chunk uploads it too: the same bytes, replaced atomically).
 * - The collector locks chunk rows with refs = 0 (FOR UPDATE, rows in chunk-id order), deletes their
 *   objects, then the rows, in that one transaction. A writer's `acquire` of such a chunk waits for the
 *   collector's commit, then inserts a new row (not stored) and uploads again; a chunk whose refs went
 *   above zero before the collector locked it is not selected (the WHERE is rechecked under the lock).
 * - Releasing (a deleted backup, a failed write) deletes that backup's reference rows and decrements
 *   exactly the chunks they named, in one statement, so repeating a release changes nothing.
 *
 * Rows are locked in chunk-id order everywhere, so concurrent writers, releases and collections do
 * not deadlock on each other.
 *
 * A writer's references are committed without waiting for the disk (`synchronous_commit` off for that
 * statement): a write takes one statement per couple of chunks, and each flush of the WAL waits behind
 * the chunk uploads' own writes to the same disks. What makes them durable is `confirmHeld`, which the
 * writer calls before its manifest exists: a commit that does wait for the disk (the WAL is flushed in
 * order, every earlier commit with it), and a count of the backup's references. A database that
 * restarted after a reference was taken and before it was flushed lost it: the count says so, and the
 * write fails instead of naming a chunk nothing protects. The visibility of a reference to a collector
 * is the same either way (immediate at commit).
 */

export interface ChunkToAcquire {
  readonly chunkId: string;
  /** Bytes the stored object takes (used if this call inserts the row). */
  readonly sizeBytes: number;
}

export interface AcquiredChunk {
  readonly chunkId: string;
  /** The object is in the store already: nothing to upload. */
  readonly stored: boolean;
  /** This call created the chunk's row: the bytes are new to backup storage. */
  readonly inserted: boolean;
}

/** Where chunks are shared: one account's chunks in one backup store. */
export interface ChunkSpace {
  readonly store: string;
  readonly accountId: number;
}

const ACQUIRE = `
  WITH commit_mode AS (SELECT set_config('synchronous_commit', $7, true)),
  input AS (
    SELECT DISTINCT ON (chunk_id) chunk_id, size_bytes
    FROM unnest($4::text[], $5::bigint[]) AS t(chunk_id, size_bytes), commit_mode
  ), ref AS (
    INSERT INTO backup_chunk_refs (backup_id, store, account_id, chunk_id)
    SELECT $3, $1, $2, chunk_id FROM input
    ON CONFLICT DO NOTHING
    RETURNING chunk_id
  )
  INSERT INTO backup_chunks AS c (store, account_id, chunk_id, size_bytes, refs, stored)
  SELECT $1, $2, i.chunk_id, i.size_bytes, (r.chunk_id IS NOT NULL)::int, $6::boolean
  FROM input i LEFT JOIN ref r ON r.chunk_id = i.chunk_id
  ORDER BY i.chunk_id
  ON CONFLICT (store, account_id, chunk_id) DO UPDATE
  SET refs = c.refs + EXCLUDED.refs, stored = c.stored OR EXCLUDED.stored
  RETURNING c.chunk_id, c.stored, (c.xmax = 0) AS inserted`;

/**
 * The number of references `$1` holds. The one row it rewrites (to itself) makes its transaction one
 * that writes, so its commit waits for the WAL to be flushed up to it: every earlier acquire included.
 */
const CONFIRM_HELD = `
  WITH held AS (
    SELECT count(*)::int AS n, min(chunk_id) AS one FROM backup_chunk_refs WHERE backup_id = $1
  ), flushed AS (
    UPDATE backup_chunk_refs r SET chunk_id = r.chunk_id FROM held
    WHERE r.backup_id = $1 AND r.chunk_id = held.one
  )
  SELECT n FROM held`;

const MARK_STORED = `
  WITH locked AS (
    SELECT chunk_id FROM backup_chunks
    WHERE store = $1 AND account_id = $2 AND chunk_id = ANY($3::text[])
    ORDER BY chunk_id
    FOR UPDATE
  )
  UPDATE backup_chunks c SET stored = true
  FROM locked l WHERE c.store = $1 AND c.account_id = $2 AND c.chunk_id = l.chunk_id`;

const RELEASE = `
  WITH gone AS (
    DELETE FROM backup_chunk_refs WHERE backup_id = $1 RETURNING store, account_id, chunk_id
  ), locked AS (
    SELECT c.store, c.account_id, c.chunk_id
    FROM backup_chunks c
    JOIN gone g ON g.store = c.store AND g.account_id = c.account_id AND g.chunk_id = c.chunk_id
    ORDER BY c.store, c.account_id, c.chunk_id
    FOR UPDATE OF c
  )
  UPDATE backup_chunks c SET refs = c.refs - 1
  FROM locked l WHERE c.store = l.store AND c.account_id = l.account_id AND c.chunk_id = l.chunk_id`;

const LOCK_UNREFERENCED = `
  SELECT chunk_id FROM backup_chunks
  WHERE store = $1 AND account_id = $2 AND refs = 0
  ORDER BY chunk_id
  LIMIT $3
  FOR UPDATE SKIP LOCKED`;

const DELETE_UNREFERENCED = `
  DELETE FROM backup_chunks WHERE store = $1 AND account_id = $2 AND chunk_id = ANY($3::text[]) AND refs = 0
  RETURNING size_bytes`;

/**
 * Objects of the store that no row names, recorded as held by nothing (and stored): `collect` then
 * removes them like any chunk whose last backup went. A chunk that has a row keeps it unchanged.
 */
const ADOPT_UNREFERENCED = `
  INSERT INTO backup_chunks (store, account_id, chunk_id, size_bytes, refs, stored)
  SELECT $1, $2, chunk_id, size_bytes, 0, true
  FROM unnest($3::text[], $4::bigint[]) AS t(chunk_id, size_bytes)
  ORDER BY chunk_id
  ON CONFLICT (store, account_id, chunk_id) DO NOTHING
  RETURNING chunk_id`;

/** Chunks removed per collector transaction: bounds its locks, its time and its memory. */
const COLLECT_BATCH = 256;
/** Object deletes a collector has in flight. */
const COLLECT_DELETES_IN_FLIGHT = 8;
/** A collector transaction holds its rows while it deletes their objects: room for a slow store. */
const COLLECT_TRANSACTION_MS = 10 * 60_000;

@Injectable()
export class ChunkReferences {
  constructor(private readonly prisma: PrismaService) {}

  /**
   * Take `backupId`'s reference on each chunk (once per chunk however often listed), not yet durable:
   * the writer calls `confirmHeld` before its manifest names them. `present`: the objects are known to
   * be in the store (a reindex: a manifest is written only after all its chunks were stored, and
   * removed before any of them), so the rows say `stored`, and the commit is durable at once.
   */
  async acquire(
    space: ChunkSpace,
    backupId: number,
    chunks: readonly ChunkToAcquire[],
    { present = false }: { present?: boolean } = {},
  ): Promise<AcquiredChunk[]> {
    if (!chunks.length) return [];
    const rows = await this.prisma.$queryRawUnsafe<
      { chunk_id: string; stored: boolean; inserted: boolean }[]
    >(
      ACQUIRE,
      space.store,
      space.accountId,
      backupId,
      chunks.map((c) => c.chunkId),
      chunks.map((c) => c.sizeBytes),
      present,
      present ? 'on' : 'off',
    );
    return rows.map((r) => ({ chunkId: r.chunk_id, stored: r.stored, inserted: r.inserted }));
  }

  /**
   * Makes every reference `backupId` took durable, and checks that it holds `expected` (its distinct
   * chunks): fewer means the database lost some after they were taken, and the write must not go on.
   */
  async confirmHeld(backupId: number, expected: number): Promise<void> {
    const [row] = await this.prisma.$queryRawUnsafe<{ n: number }[]>(CONFIRM_HELD, backupId);
    if (row?.n !== expected) {
      throw new Error(
        `backup ${backupId}: ${row?.n ?? 0} of its ${expected} chunk references are there; ` +
          'the database lost some during the write (a restart?)',
      );
    }
  }

  /** The chunks' objects are in the store, durably (called after their upload and the store's sync). */
  async markStored(space: ChunkSpace, chunkIds: readonly string[]): Promise<void> {
    if (!chunkIds.length) return;
    await this.prisma.$executeRawUnsafe(MARK_STORED, space.store, space.accountId, [...chunkIds]);
  }

  /** Drop every reference `backupId` holds. Idempotent. Returns how many it dropped. */
  async release(backupId: number): Promise<number> {
    return this.prisma.$executeRawUnsafe(RELEASE, backupId);
  }

  /**
   * Gives a row to each listed object of the store that has none, as an unreferenced chunk the next
   * `collect` removes; returns how many were given one. Such an object is one whose reference the
   * database lost (taken without a flush, then a crash) or never had (a database restored from an older
   * copy). Safe beside writers: a writer takes its row before it uploads, so no write in progress relies
   * on an object without a row; one whose row was lost fails at `confirmHeld`. The caller makes sure no
   * manifest it could not index names these chunks.
   */
  async adoptUnreferenced(space: ChunkSpace, chunks: readonly ChunkToAcquire[]): Promise<number> {
    if (!chunks.length) return 0;
    const rows = await this.prisma.$queryRawUnsafe<{ chunk_id: string }[]>(
      ADOPT_UNREFERENCED,
      space.store,
      space.accountId,
      chunks.map((c) => c.chunkId),
      chunks.map((c) => c.sizeBytes),
    );
    return rows.length;
  }

  /**
   * Remove the space's unreferenced chunks: objects first, then rows, per locked batch. Returns the
   * bytes freed. A failure of the store rolls the batch back: its rows stay, and the next collection
   * deletes the objects again (deleting is idempotent).
   */
  async collect(
    space: ChunkSpace,
    deleteObject: (chunkId: string) => Promise<void>,
  ): Promise<{ freedBytes: number; chunks: number }> {
    let freedBytes = 0;
    let chunks = 0;
    for (;;) {
      const batch = await this.prisma.$transaction(
        async (tx) => {
          const rows = await tx.$queryRawUnsafe<{ chunk_id: string }[]>(
            LOCK_UNREFERENCED,
            space.store,
            space.accountId,
            COLLECT_BATCH,
          );
          await forEachLimited(rows, COLLECT_DELETES_IN_FLIGHT, (r) => deleteObject(r.chunk_id));
          const deleted = await tx.$queryRawUnsafe<{ size_bytes: bigint }[]>(
            DELETE_UNREFERENCED,
            space.store,
            space.accountId,
            rows.map((r) => r.chunk_id),
          );
          return { locked: rows.length, deleted };
        },
        { timeout: COLLECT_TRANSACTION_MS },
      );
      chunks += batch.deleted.length;
      for (const d of batch.deleted) freedBytes += Number(d.size_bytes);
      if (batch.locked < COLLECT_BATCH) return { freedBytes, chunks };
    }
  }
}

/**
 * One write's references on single chunks, taken together: the chunks asked for while a statement
 * runs go in the next one, so lanes that finish hashing at about the same time share one round trip
 * (and one statement's CPU). A chunk listed twice in one statement counts as inserted once, as two
 * statements in a row would.
 */
export class ChunkAcquirer {
  private waiting: {
    readonly chunk: ChunkToAcquire;
    readonly resolve: (held: AcquiredChunk) => void;
    readonly reject: (error: unknown) => void;
  }[] = [];
  private running = false;

  constructor(
    private readonly refs: ChunkReferences,
    private readonly space: ChunkSpace,
    private readonly backupId: number,
  ) {}

  acquire(chunk: ChunkToAcquire): Promise<AcquiredChunk> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ chunk, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    while (this.waiting.length) {
      const batch = this.waiting;
      this.waiting = [];
      try {
        const rows = await this.refs.acquire(
          this.space,
          this.backupId,
          batch.map((w) => w.chunk),
        );
        const byId = new Map(rows.map((r) => [r.chunkId, r]));
        for (const w of batch) {
          const held = byId.get(w.chunk.chunkId);
          if (!held) {
            w.reject(new Error(`acquire: no row for chunk ${w.chunk.chunkId}`));
            continue;
          }
          w.resolve(held);
          byId.set(held.chunkId, { ...held, inserted: false });
        }
      } catch (error) {
        for (const w of batch) w.reject(error);
      }
    }
    this.running = false;
  }
}
