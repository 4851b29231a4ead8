import { Inject, Injectable } from '@nestjs/common';
import { BackupStore } from '../../backup-store/backup-store';
import { PrismaService } from '../../prisma/prisma.service';
import { AccountKeys, WrappedAccountKey } from '../data/account-keys';
import { isBackupDataError } from '../data/backup-data-errors';
import { chunkKey, chunkLength, parseChunkKey } from '../data/backup-layout';
import { BackupObjects, storedChunkBytes } from '../data/backup-objects';
import { BACKUP_STORES, BackupStores } from '../data/backup-stores';
import { ChunkReferences, ChunkToAcquire } from '../data/chunk-references';
import { BackupManifest, ManifestIndex } from '../data/manifest';

/** What a reindex found and did. */
export interface ReindexReport {
  readonly store: string;
  /** Manifests read. */
  manifests: number;
  /** Backup rows written. */
  indexed: number;
  /** Manifests whose backup row was there already (their chunk references are taken again, idempotently). */
  alreadyIndexed: number;
  /** Account keys taken from the store's copies into the database. */
  keysAdopted: number;
  /** Manifests not indexed, with why. */
  readonly skipped: { readonly key: string; readonly why: string }[];
  /** Chunk objects no manifest or reference names, removed, and the bytes that freed. */
  unreferencedRemoved: number;
  freedBytes: number;
  /** Accounts whose chunk objects were all kept, with why (a manifest not indexed may name them). */
  readonly unreferencedKept: { readonly accountId: number; readonly why: string }[];
}

/** Chunk references taken (or unreferenced objects given a row) per statement. */
const REFS_BATCH = 1000;
const KEY = /^accounts\/(\d{1,10})\/(chunks|keys|manifests)\/([^/]+)$/;
/** The largest id of an `int` column. */
const MAX_ID = 2_147_483_647;

/** Inserts a reindexed backup row unless its id is taken. */
const INSERT_BACKUP = `
  WITH ins AS (
    INSERT INTO backups (id, account_id, server_id, name, description, kind, status, progress, size_bytes,
                         stored_bytes, consistency, mode, mode_reason, checkpoint, store, created_at,
                         completed_at, expires_at)
    VALUES ($1::int, $2::int, $3::int, $4::varchar, $5::varchar, $6::backup_kind, 'completed', 100,
            $7::bigint, $8::bigint, $9::snapshot_consistency, $10::backup_mode, $11::varchar, $12::varchar,
            $13::varchar, $14::timestamptz, $15::timestamptz, $16::timestamptz)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
  )
  SELECT count(*)::int AS inserted FROM ins`;

/**
 * Moves the backup id sequence past every manifest the store holds, indexed or skipped: a backup
 * created afterwards must never get (and overwrite the manifest of) a stored backup's id.
 */
const RESERVE_IDS = `SELECT setval('backups_id_seq', GREATEST($1::bigint, (SELECT last_value FROM backups_id_seq)))::text`;

interface AccountState {
  readonly accountId: number;
  /** Ids (hex) of the key copies listed so far. */
  readonly keyCopies: string[];
  /** The account's key, once settled; a string says why its manifests cannot be read. */
  objects?: BackupObjects | string;
}

/**
 * Rebuilds the database's index of one backup store from the store alone (docs/operations.md "If the
 * database is lost"): for every manifest, the backup row and its chunk references, and each account's
 * data key from the store's copy when the database has none. Idempotent. Servers are matched by id:
 * a manifest whose server does not exist (or belongs to another account) is skipped and reported, and
 * its data stays in the store untouched, so a later run indexes it once the server is back.
 *
 * Reads the store's listing once (linear in its objects, memory bounded by one manifest), and writes
 * nothing to the store. Run it with the API and workers stopped: a backup created meanwhile could be
 * given a reindexed backup's id.
 */
@Injectable()
export class BackupReindex {
  constructor(
    private readonly prisma: PrismaService,
    @Inject(BACKUP_STORES) private readonly stores: BackupStores,
    private readonly keys: AccountKeys,
    private readonly refs: ChunkReferences,
  ) {}

  async run(storeName: string): Promise<ReindexReport> {
    const store = this.stores.byName(storeName);
    const report: ReindexReport = {
      store: storeName,
      manifests: 0,
      indexed: 0,
      alreadyIndexed: 0,
      keysAdopted: 0,
      skipped: [],
      unreferencedRemoved: 0,
      freedBytes: 0,
      unreferencedKept: [],
    };
    let account: AccountState | null = null;
    // Keys are listed in byte order: an account's `keys/` come before its `manifests/`.
    for await (const object of store.list('accounts/')) {
      const m = KEY.exec(object.key);
      if (!m || m[2] === 'chunks') continue;
      const accountId = Number(m[1]);
      if (m[2] === 'manifests' && !(accountId <= MAX_ID && Number(m[3]) <= MAX_ID)) {
        report.manifests++;
        report.skipped.push({ key: object.key, why: 'not a backup id this database can hold' });
        continue;
      }
      const acct: AccountState = account?.accountId === accountId ? account : { accountId, keyCopies: [] };
      account = acct;
      if (m[2] === 'keys') {
        acct.keyCopies.push(m[3]);
        continue;
      }
      report.manifests++;
      const backupId = Number(m[3]);
      // First, so that even a run stopped right here leaves no stored id to be handed out again.
      await this.prisma.$queryRawUnsafe(RESERVE_IDS, backupId);
      acct.objects ??= await this.openAccount(store, acct, report);
      const why =
        typeof acct.objects === 'string'
          ? acct.objects
          : await this.indexManifest(storeName, acct.objects, accountId, backupId, report);
      if (why) report.skipped.push({ key: object.key, why });
    }
    const withheld = new Set(report.skipped.map((s) => Number(KEY.exec(s.key)![1])));
    await this.removeUnreferenced(store, storeName, withheld, report);
    return report;
  }

  /**
   * After every manifest was indexed, each chunk one names has a row: a chunk object with none is
   * named by nothing (its reference was lost with a crashed database, or the database is older than
   * the store) and is removed, through the collector's own locking. An account with a manifest not
   * indexed (or not in the database) keeps all its objects. A second listing of the store.
   */
  private async removeUnreferenced(
    store: BackupStore,
    storeName: string,
    withheld: ReadonlySet<number>,
    report: ReindexReport,
  ): Promise<void> {
    const known = new Map<number, boolean>();
    const adoptedIn = new Set<number>();
    // One account's row-less candidates at a time (the listing is in key order, an account's together).
    let batchAccount = -1;
    let batch: ChunkToAcquire[] = [];
    const adopt = async (): Promise<void> => {
      if (!batch.length) return;
      const space = { store: storeName, accountId: batchAccount };
      if ((await this.refs.adoptUnreferenced(space, batch)) > 0) adoptedIn.add(batchAccount);
      batch = [];
    };
    for await (const object of store.list('accounts/')) {
      const chunk = parseChunkKey(object.key);
      if (!chunk) continue;
      const { accountId, chunkId } = chunk;
      if (!known.has(accountId)) {
        const why = withheld.has(accountId)
          ? 'a manifest of the account is not indexed'
          : (await this.accountExists(accountId))
            ? null
            : 'the account does not exist';
        known.set(accountId, why === null);
        if (why) report.unreferencedKept.push({ accountId, why });
      }
      if (!known.get(accountId)) continue;
      if (batchAccount !== accountId || batch.length >= REFS_BATCH) {
        await adopt();
        batchAccount = accountId;
      }
      batch.push({ chunkId, sizeBytes: object.sizeBytes });
    }
    await adopt();
    for (const accountId of adoptedIn) {
      const freed = await this.refs.collect({ store: storeName, accountId }, (chunkId) =>
        store.delete(chunkKey(accountId, chunkId)),
      );
      report.unreferencedRemoved += freed.chunks;
      report.freedBytes += freed.freedBytes;
    }
  }

  private async accountExists(accountId: number): Promise<boolean> {
    if (accountId > MAX_ID) return false;
    return !!(await this.prisma.account.findUnique({ where: { id: accountId }, select: { id: true } }));
  }

  /** The account's objects, opened with its key (the database's, else the store's copy adopted). */
  private async openAccount(
    store: BackupStore,
    account: AccountState,
    report: ReindexReport,
  ): Promise<BackupObjects | string> {
    const { accountId } = account;
    if (!(await this.accountExists(accountId))) return `account ${accountId} does not exist`;
    try {
      let row: WrappedAccountKey | null = await this.keys.find(accountId);
      if (!row) {
        if (account.keyCopies.length !== 1) {
          return `account ${accountId} has no key in the database and ${account.keyCopies.length} key copies in the store (one is needed)`;
        }
        const keyId = Buffer.from(account.keyCopies[0], 'hex');
        const wrapped = await this.keys.findCopy(store, accountId, keyId);
        if (!wrapped) return `account ${accountId}: its key copy vanished while listing`;
        row = await this.keys.adopt(accountId, { keyId, wrapped });
        if (row.keyId.equals(keyId)) report.keysAdopted++;
      }
      return new BackupObjects(store, accountId, this.keys.unwrap(accountId, row));
    } catch (e) {
      if (isBackupDataError(e)) return e.detail ?? `account ${accountId}: ${e.message}`;
      throw e;
    }
  }

  /** Index one manifest; returns why not when it is skipped. */
  private async indexManifest(
    storeName: string,
    objects: BackupObjects,
    accountId: number,
    backupId: number,
    report: ReindexReport,
  ): Promise<string | null> {
    let manifest: BackupManifest;
    try {
      manifest = await objects.getManifest(backupId);
    } catch (e) {
      if (isBackupDataError(e)) return e.detail ?? e.message;
      throw e;
    }
    const index = manifest.index;
    if (!index) return `version ${manifest.version} manifest: it does not record its server and name`;
    const server = await this.prisma.server.findUnique({
      where: { id: index.serverId },
      select: { accountId: true },
    });
    if (!server) return `server ${index.serverId} does not exist`;
    if (server.accountId !== accountId) return `server ${index.serverId} belongs to another account`;
    const existing = await this.prisma.backup.findUnique({
      where: { id: backupId },
      select: { accountId: true, serverId: true, store: true, deletedAt: true },
    });
    if (existing) {
      if (
        existing.accountId !== accountId ||
        existing.serverId !== index.serverId ||
        existing.store !== storeName
      )
        return `backup ${backupId} is in the database as another backup`;
      // Being deleted: its delete job releases what it holds; taking references again would leak them.
      if (!existing.deletedAt) await this.reference(storeName, accountId, manifest);
      report.alreadyIndexed++;
      return null;
    }
    // References first: should the run stop between the two, the next one finds no row and takes them
    // again (a no-op), then writes the row.
    await this.reference(storeName, accountId, manifest);
    const inserted = await this.insertRow(storeName, accountId, manifest, index);
    if (inserted) report.indexed++;
    else report.alreadyIndexed++;
    return null;
  }

  private async reference(storeName: string, accountId: number, manifest: BackupManifest): Promise<void> {
    const sizes = new Map<string, number>();
    manifest.chunks.forEach((id, i) => {
      if (id) sizes.set(id, storedChunkBytes(chunkLength(i, manifest.virtualSizeBytes)));
    });
    const chunks = [...sizes].map(([chunkId, sizeBytes]) => ({ chunkId, sizeBytes }));
    for (let from = 0; from < chunks.length; from += REFS_BATCH) {
      await this.refs.acquire(
        { store: storeName, accountId },
        manifest.backupId,
        chunks.slice(from, from + REFS_BATCH),
        { present: true },
      );
    }
  }

  private async insertRow(
    storeName: string,
    accountId: number,
    manifest: BackupManifest,
    index: ManifestIndex,
  ): Promise<boolean> {
    const rows = await this.prisma.$queryRawUnsafe<{ inserted: number }[]>(
      INSERT_BACKUP,
      manifest.backupId,
      accountId,
      index.serverId,
      index.name,
      index.description,
      index.kind,
      index.sizeBytes,
      index.storedBytes,
      index.consistency,
      manifest.mode,
      index.modeReason,
      index.checkpoint,
      storeName,
      index.createdAt,
      index.completedAt,
      index.expiresAt,
    );
    return rows[0]?.inserted === 1;
  }
}
