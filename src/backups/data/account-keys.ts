import { Injectable } from '@nestjs/common';
import { createHash, randomBytes } from 'node:crypto';
import { AppConfig } from '../../config/app-config';
import { PrismaService } from '../../prisma/prisma.service';
import { BackupDataError } from './backup-data-errors';
import { KEY_ID_BYTES, open, seal, SealingKey } from './sealed-box';

/**
 * The master key from configuration (`BACKUP_MASTER_KEY`), which only wraps account data keys. Its id
 * (written into every wrapped key) is derived from it, so a store or database read with another master
 * key says so instead of failing obscurely.
 */
@Injectable()
export class BackupMasterKey {
  private readonly key: SealingKey | null;

  constructor(config: AppConfig) {
    const master = config.backupMasterKey;
    this.key = master
      ? {
          id: createHash('sha256')
            .update('admin-vps backup master key\0')
            .update(master)
            .digest()
            .subarray(0, KEY_ID_BYTES),
          key: master,
        }
      : null;
  }

  get(): SealingKey {
    if (!this.key) throw new BackupDataError('backup_key_unavailable', 'BACKUP_MASTER_KEY is not set');
    return this.key;
  }
}

const DATA_KEY_BYTES = 32;

/** The AAD of an account's wrapped key: a wrapped key copied to another account does not open. */
function wrapAad(accountId: number, keyId: Buffer): string {
  return `account-key:${accountId}:${keyId.toString('hex')}`;
}

/**
 * Each account's 256-bit data key: created on first use, stored only wrapped by the master key, and
 * unwrapped in memory when a backup is written or read. Never logged, never in the database in clear.
 */
@Injectable()
export class AccountKeys {
  constructor(
    private readonly prisma: PrismaService,
    private readonly master: BackupMasterKey,
  ) {}

  /** The account's data key, creating it the first time (concurrent first uses agree on one key). */
  async forAccount(accountId: number): Promise<SealingKey> {
    const master = this.master.get();
    const existing = await this.find(accountId);
    if (existing) return this.unwrap(accountId, existing, master);
    const keyId = randomBytes(KEY_ID_BYTES);
    const wrapped = seal(master, randomBytes(DATA_KEY_BYTES), wrapAad(accountId, keyId));
    await this.prisma.$executeRaw`
      INSERT INTO account_keys (account_id, key_id, wrapped_key) VALUES (${accountId}, ${keyId}, ${wrapped})
      ON CONFLICT (account_id) DO NOTHING`;
    const row = await this.find(accountId);
    if (!row) throw new BackupDataError('backup_key_unavailable', `account ${accountId}: key row vanished`);
    return this.unwrap(accountId, row, master);
  }

  private async find(accountId: number): Promise<{ keyId: Buffer; wrapped: Buffer } | null> {
    const row = await this.prisma.accountKey.findUnique({ where: { accountId } });
    return row ? { keyId: Buffer.from(row.keyId), wrapped: Buffer.from(row.wrappedKey) } : null;
  }

  private unwrap(accountId: number, row: { keyId: Buffer; wrapped: Buffer }, master: SealingKey): SealingKey {
    const key = open(master, row.wrapped, wrapAad(accountId, row.keyId));
    if (!key || key.length !== DATA_KEY_BYTES) {
      throw new BackupDataError(
        'backup_key_unavailable',
        `account ${accountId}: data key does not unwrap with this BACKUP_MASTER_KEY`,
      );
    }
    return { id: row.keyId, key };
  }
}
