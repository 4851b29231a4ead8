import { Injectable } from '@nestjs/common';
import { BackupReindex } from '../backups/recovery/backup-reindex';
import { MasterKeyRotation } from '../backups/recovery/master-key-rotation';
import { IncompleteRun, parseCommandLine, UsageError } from '../cli-kit/command-line';

export const BACKUP_USAGE = `  backups reindex --store <name>                          rebuild the database's backups, chunk references
                                                          and account keys from the store's manifests, and
                                                          remove chunks no manifest names (after losing the
                                                          database or a crash of it; API and workers stopped)
  backups rotate-master-key                               re-wrap every account key (database and store copies)
                                                          with BACKUP_MASTER_KEY, reading BACKUP_MASTER_KEY_PREVIOUS
  Both are idempotent: run again after fixing what they report (exit 1 when something was left undone).
`;

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** The operator CLI's `backups …` commands (docs/operations.md). */
@Injectable()
export class BackupCliCommands {
  constructor(
    private readonly reindex: BackupReindex,
    private readonly rotation: MasterKeyRotation,
  ) {}

  async run(verb: string, args: string[]): Promise<string> {
    switch (verb) {
      case 'reindex': {
        const { positionals, values } = parseCommandLine(args, { store: { type: 'string' } });
        if (positionals.length || typeof values.store !== 'string' || !values.store)
          throw new UsageError('backups reindex takes --store <name>');
        const r = await this.reindex.run(values.store);
        const lines = [
          `store ${r.store}: ${plural(r.manifests, 'manifest')}; ${r.indexed} indexed, ` +
            `${r.alreadyIndexed} already indexed, ${r.skipped.length} skipped; ` +
            `${plural(r.keysAdopted, 'account key')} taken from the store`,
          ...r.skipped.map((s) => `skipped ${s.key}: ${s.why}`),
          `${plural(r.unreferencedRemoved, 'chunk')} no manifest names removed, ${plural(r.freedBytes, 'byte')} freed`,
          ...r.unreferencedKept.map((k) => `kept the chunks of account ${k.accountId}: ${k.why}`),
          // Manifests are sealed once, at completion, so later changes of these are not in the store.
          ...(r.indexed
            ? [
                `${plural(r.indexed, 'backup')} indexed without labels and unprotected (the store does not ` +
                  'keep them): set them again before the backup policies',
              ]
            : []),
        ];
        if (r.skipped.length)
          throw new IncompleteRun(lines.join('\n'), `${plural(r.skipped.length, 'manifest')} not indexed`);
        return lines.join('\n');
      }
      case 'rotate-master-key': {
        if (args.length) throw new UsageError('backups rotate-master-key takes no arguments');
        const r = await this.rotation.run();
        const lines = [
          `${plural(r.accounts, 'account key')}: ${r.rewrapped} re-wrapped in the database, ` +
            `${plural(r.copiesWritten, 'store copy', 'store copies')} written, ${plural(r.failures.length, 'failure')}`,
          ...r.failures.map((f) => `failed ${f}`),
        ];
        if (r.failures.length)
          throw new IncompleteRun(lines.join('\n'), `${plural(r.failures.length, 'key')} not rotated`);
        return lines.join('\n');
      }
      default:
        throw new UsageError(`unknown command "backups ${verb}"`);
    }
  }
}
