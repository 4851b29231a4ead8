/**
 * A test double of BackupDataPath for the API's and the worker's tests: it records what the backup jobs
 * ask and answers as a data path would (the first write of a server full, later ones incremental from
 * the base they are given). The data path itself is tested on its own; e2e tests that need the real one
 * take the worker's own BACKUP_DATA_PATH.
 */
import { INestApplicationContext } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { WorkerModule } from '../../src/app/worker.module';
import {
  BACKUP_DATA_PATH,
  BackupDataPath,
  BackupRef,
  WriteBackupInput,
  WriteBackupResult,
} from '../../src/backups/backup-data-path';
import { AppConfig } from '../../src/config/app-config';
import { ServerRef } from '../../src/hypervisor/hypervisor-driver';

const MIB = 1024 * 1024;

/** Records the jobs' calls and answers as a data path would: the first write full, later ones incremental. */
export class RecordingDataPath implements BackupDataPath {
  writes: WriteBackupInput[] = [];
  restores: { backup: BackupRef; target: ServerRef }[] = [];
  deletes: BackupRef[] = [];
  failNextWrite = false;

  writeBackup(input: WriteBackupInput, onProgress: (pct: number) => void): Promise<WriteBackupResult> {
    this.writes.push(input);
    onProgress(50);
    if (this.failNextWrite) {
      this.failNextWrite = false;
      return Promise.reject(new Error('store unreachable'));
    }
    return Promise.resolve({
      sizeBytes: 8 * MIB,
      storedBytes: input.base ? 1 * MIB : 8 * MIB,
      mode: input.base ? 'incremental' : 'full',
      modeReason: input.base ? null : 'no_previous_backup',
      consistency: 'crash_consistent',
      checkpoint: input.checkpoint,
    });
  }

  restoreBackup(backup: BackupRef, target: ServerRef): Promise<void> {
    this.restores.push({ backup, target });
    return Promise.resolve();
  }

  deleteBackup(backup: BackupRef): Promise<{ freedBytes: number }> {
    this.deletes.push(backup);
    return Promise.resolve({ freedBytes: 0 });
  }

  verifyBackup(): Promise<{ ok: true }> {
    return Promise.resolve({ ok: true });
  }
}

/** A worker process (as startWorker) whose BACKUP_DATA_PATH is `dataPath`. */
export async function startWorkerWithDataPath(
  config: AppConfig,
  dataPath: BackupDataPath,
): Promise<INestApplicationContext> {
  const ctx = await Test.createTestingModule({ imports: [WorkerModule.forConfig(config)] })
    .overrideProvider(BACKUP_DATA_PATH)
    .useValue(dataPath)
    .compile();
  ctx.useLogger(false);
  await ctx.init();
  return ctx;
}
