import { Injectable } from '@nestjs/common';
import { createHash, randomBytes } from 'node:crypto';
import { BackupStore, isBackupStoreError } from '../../backup-store/backup-store';
import { AppConfig } from '../../config/app-config';
import { PrismaService } from '../../prisma/prisma.service';
import { BackupDataError } from './backup-data-errors';
import { accountKeyKey } from './backup-layout';
import { KEY_ID_BYTES, open, seal, sealedKeyId, SealingKey } from './sealed-box';

function masterKeyOf(master: Buffer | null): SealingKey | null {
  if (!master) return null;
  const id = createHash('sha256')
    .update('admin-vps backup master key\0')
    .update(master)
    .digest()
    .subarray(0, KEY_ID_BYTES);
  return { id, key: master };
}

/**
 * The master key from configuration (`BACKUP_MASTER_KEY`), which only wraps account data keys, and
 * during a rotation the one before it (`BACKUP_MASTER_KEY_PREVIOUS`), which only unwraps them. A key's
 * id (written into every wrapped key) is derived from it, so a store or database read with another
 * master key says so instead of failing obscurely.
 */
@Injectable()
export class BackupMasterKey {
  private readonly current: SealingKey | null;
  private readonly previous: SealingKey | null;

  constructor(config: AppConfig) {
    this.current = masterKeyOf(config.backupMasterKey);
    this.previous = masterKeyOf(config.backupMasterKeyPrevious);
  }

  /** The key that wraps. */
  get(): SealingKey {
    if (!this.current) throw new BackupDataError('backup_key_unavailable', 'BACKUP_MASTER_KEY is not set');
    return this.current;
  }

  /** The configured key that sealed `wrapped` (the current or the previous one), or null. */
  sealing(wrapped: Buffer): SealingKey | null {
    const id = sealedKeyId(wrapped);
    if (!id) return null;
    for (const k of [this.current, this.previous]) if (k?.id.equals(id)) return k;
    return null;
  }

  /** Whether `wrapped` is sealed by the current key (nothing left to rotate). */
  isCurrent(wrapped: Buffer): boolean {
    return this.current !== null && this.sealing(wrapped) === this.current;
  }
}

const DATA_KEY_BYTES = 32;

/** The AAD of an account's wrapped key: a wrapped key copied to another account does not open. */
function wrapAad(accountId: number, keyId: Buffer): string {
  return `account-key:${accountId}:${keyId.toString('hex')}`;
}

/** An account's data key as stored: its id and the key sealed by a master key. */
export interface WrappedAccountKey {
  readonly keyId: Buffer;
  readonly wrapped: Buffer;
}

/**
 * Each account's 256-bit data key: created on first use, stored only wrapped by the master key, and
 * unwrapped in memory when a backup is written or read. Never logged, never in the database in clear.
 *
 * The wrapped key lives in `account_keys` and, so a store can be read without the database, a copy in
 * every store holding the account's data (`accounts/<account>/keys/<key id>`), written before the
 * first chunk an operation stores there. A copy is named by its key id and only ever replaced by the
 * same key wrapped anew, so a store never loses a key its chunks were sealed with.
 */
@Injectable()
export class AccountKeys {
  /** Copies known to be in a store, per store: `<account>:<wrapped key, base64>`. */
  private readonly copied = new WeakMap<BackupStore, Set<string>>();

  constructor(
    private readonly prisma: PrismaService,
    private readonly master: BackupMasterKey,
  ) {}

  /**
   * The account's data key, creating it the first time (concurrent first uses agree on one key). With
   * `copyTo`, the wrapped key is also made present in that store before the key is handed out.
   */
  async forAccount(accountId: number, copyTo?: BackupStore): Promise<SealingKey> {
    let row = await this.find(accountId);
    if (!row) {
      const keyId = randomBytes(KEY_ID_BYTES);
      const wrapped = seal(this.master.get(), randomBytes(DATA_KEY_BYTES), wrapAad(accountId, keyId));
      row = await this.insertIfMissing(accountId, { keyId, wrapped });
    }
    const key = this.unwrap(accountId, row);
    if (copyTo) await this.copy(copyTo, accountId, row);
    return key;
  }

  /** The account's wrapped key as the database holds it, or null. */
  async find(accountId: number): Promise<WrappedAccountKey | null> {
    const row = await this.prisma.accountKey.findUnique({ where: { accountId } });
    return row ? { keyId: Buffer.from(row.keyId), wrapped: Buffer.from(row.wrappedKey) } : null;
  }

  /** The copy of the account's wrapped key with that id in `store`, or null when there is none. */
  async findCopy(store: BackupStore, accountId: number, keyId: Buffer): Promise<Buffer | null> {
    try {
      return await store.get(accountKeyKey(accountId, keyId.toString('hex')));
    } catch (e) {
      if (isBackupStoreError(e) && e.code === 'not_found') return null;
      throw e;
    }
  }

  /**
   * Make `key` the account's key in the database unless it has one (a reindex adopting a store's copy),
   * after checking that it unwraps. Returns the key the database holds afterwards.
   */
  async adopt(accountId: number, key: WrappedAccountKey): Promise<WrappedAccountKey> {
    this.unwrap(accountId, key);
    return this.insertIfMissing(accountId, key);
  }

  /** Insert `key` unless the account has one; the key the database holds afterwards (one wins a race). */
  private async insertIfMissing(accountId: number, key: WrappedAccountKey): Promise<WrappedAccountKey> {
    await this.prisma.$executeRaw`
      INSERT INTO account_keys (account_id, key_id, wrapped_key) VALUES (${accountId}, ${key.keyId}, ${key.wrapped})
      ON CONFLICT (account_id) DO NOTHING`;
    const row = await this.find(accountId);
    if (!row) throw new BackupDataError('backup_key_unavailable', `account ${accountId}: key row vanished`);
    return row;
  }

  /** The data key in clear, checked: it must open with a configured master key. */
  unwrap(accountId: number, row: WrappedAccountKey): SealingKey {
    const master = this.master.sealing(row.wrapped);
    const key = master && open(master, row.wrapped, wrapAad(accountId, row.keyId));
    if (!key || key.length !== DATA_KEY_BYTES) {
      throw new BackupDataError(
        'backup_key_unavailable',
        `account ${accountId}: data key does not unwrap with BACKUP_MASTER_KEY (or BACKUP_MASTER_KEY_PREVIOUS)`,
      );
    }
    return { id: row.keyId, key };
  }

  /**
   * The same data key wrapped by the current master key, or null when `row` is wrapped by it already.
   * `backup_key_unavailable` when it opens with no configured master key.
   */
  rewrap(accountId: number, row: WrappedAccountKey): Buffer | null {
    const clear = this.unwrap(accountId, row);
    if (this.master.isCurrent(row.wrapped)) return null;
    return seal(this.master.get(), clear.key, wrapAad(accountId, row.keyId));
  }

  /** Whether `wrapped` is sealed by the current master key. */
  isCurrent(wrapped: Buffer): boolean {
    return this.master.isCurrent(wrapped);
  }

  /**
   * Write the store's copy of `row`, unless it is there already as `row` or sealed by the current
   * master key. Returns whether it wrote.
   */
  async copy(store: BackupStore, accountId: number, row: WrappedAccountKey): Promise<boolean> {
    const known = this.copied.get(store) ?? new Set<string>();
    this.copied.set(store, known);
    const tag = `${accountId}:${row.wrapped.toString('base64')}`;
    if (known.has(tag)) return false;
    const there = await this.findCopy(store, accountId, row.keyId);
    const keep = there && (there.equals(row.wrapped) || this.master.isCurrent(there));
    if (!keep) await store.put(accountKeyKey(accountId, row.keyId.toString('hex')), row.wrapped);
    known.add(tag);
    return !keep;
  }
}
