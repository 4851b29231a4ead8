import { Inject, Injectable } from '@nestjs/common';
import { isBackupStoreError } from '../../backup-store/backup-store';
import { PrismaService } from '../../prisma/prisma.service';
import { AccountKeys, WrappedAccountKey } from '../data/account-keys';
import { isBackupDataError } from '../data/backup-data-errors';
import { BACKUP_STORES, BackupStores } from '../data/backup-stores';

/** What a rotation did. */
export interface RotationReport {
  /** Account keys looked at. */
  accounts: number;
  /** Database rows re-wrapped with the current master key by this run. */
  rewrapped: number;
  /** Store copies written by this run (re-wrapped, or missing). */
  copiesWritten: number;
  /** What could not be done (this run changed nothing of those): run again once fixed. */
  readonly failures: string[];
}

/** Account key rows read per query. */
const PAGE = 200;

/** Replaces a wrapped key only if it is still the one read (a concurrent run may have re-wrapped it). */
const REWRAP = `UPDATE account_keys SET wrapped_key = $3 WHERE account_id = $1 AND wrapped_key = $2`;

/**
 * Master key rotation (docs/operations.md "Rotate the backup master key"): every account's data key,
 * in the database and its copy in each store holding the account's live backups, re-wrapped with
 * `BACKUP_MASTER_KEY`, the ones still wrapped by `BACKUP_MASTER_KEY_PREVIOUS` opened with that. The
 * data keys themselves do not change, so no chunk or manifest is rewritten.
 *
 * Idempotent and resumable: each wrapped key is looked at on its own and left alone when the current
 * key wraps it already, so a run that stopped anywhere is finished by running it again; workers
 * configured with both keys read either meanwhile.
 */
@Injectable()
export class MasterKeyRotation {
  constructor(
    private readonly prisma: PrismaService,
    @Inject(BACKUP_STORES) private readonly stores: BackupStores,
    private readonly keys: AccountKeys,
  ) {}

  async run(): Promise<RotationReport> {
    const report: RotationReport = { accounts: 0, rewrapped: 0, copiesWritten: 0, failures: [] };
    for (let after = 0; ;) {
      const rows = await this.prisma.accountKey.findMany({
        where: { accountId: { gt: after } },
        orderBy: { accountId: 'asc' },
        take: PAGE,
      });
      for (const r of rows) {
        report.accounts++;
        await this.rotate(
          r.accountId,
          { keyId: Buffer.from(r.keyId), wrapped: Buffer.from(r.wrappedKey) },
          report,
        );
      }
      if (rows.length < PAGE) return report;
      after = rows[rows.length - 1].accountId;
    }
  }

  private async rotate(accountId: number, row: WrappedAccountKey, report: RotationReport): Promise<void> {
    let current: WrappedAccountKey;
    try {
      const rewrapped = this.keys.rewrap(accountId, row);
      if (rewrapped) {
        const changed = await this.prisma.$executeRawUnsafe(REWRAP, accountId, row.wrapped, rewrapped);
        if (changed) report.rewrapped++;
      }
      const now = await this.keys.find(accountId);
      if (!now || !this.keys.isCurrent(now.wrapped)) {
        report.failures.push(`account ${accountId}: its key changed while being re-wrapped`);
        return;
      }
      current = now;
    } catch (e) {
      if (!isBackupDataError(e)) throw e;
      report.failures.push(e.detail ?? `account ${accountId}: ${e.message}`);
      return;
    }
    const stores = await this.prisma.backup.findMany({
      where: { accountId, deletedAt: null, store: { not: null } },
      distinct: ['store'],
      select: { store: true },
    });
    for (const { store: name } of stores) {
      try {
        if (await this.keys.copy(this.stores.byName(name!), accountId, current)) report.copiesWritten++;
      } catch (e) {
        if (!isBackupStoreError(e)) throw e;
        report.failures.push(`account ${accountId}, store ${name}: ${e.detail ?? e.message}`);
      }
    }
  }
}
