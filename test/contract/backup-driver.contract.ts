import { createHash } from 'node:crypto';

import {
  BackupReadSession,
  DiskExtent,
  HypervisorError,
  HypervisorErrorCode,
  ServerRef,
} from '../../src/hypervisor/hypervisor-driver';
import { DriverHarness } from './hypervisor-driver.contract';

/**
 * The contract of the backup side of every driver (`BackupCapableDriver` in
 * `src/hypervisor/hypervisor-driver.ts`), run against each driver with the same harness as the main
 * contract suite. Disks here are real-sized (MiB), so 64 KiB clusters mean what they say.
 */
export interface BackupDriverHarness extends DriverHarness {
  /**
   * Optional: kill the running server's hypervisor process as a host crash would (qemu SIGKILLed),
   * leaving the domain stopped and its checkpoints' bitmaps untrustworthy.
   */
  crashHypervisor?(server: ServerRef): Promise<void>;
}

const CASE_TIMEOUT_MS = 180_000;
const KIB = 1024;
const MIB = 1024 * KIB;
const CLUSTER = 64 * KIB;

let nextBackupId = 1 + Math.floor(Math.random() * 1_000_000) * 1000;
const checkpointName = (): string => `vps-backup-${nextBackupId++}`;

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** The whole view assembled from its extents, zero elsewhere (the meaning of a full read). */
async function assemble(session: BackupReadSession): Promise<Buffer> {
  const out = Buffer.alloc(session.virtualSizeBytes);
  for (const e of session.extents) (await session.read(e.offset, e.length)).copy(out, e.offset);
  return out;
}

function expectWellFormed(session: BackupReadSession): void {
  let end = 0;
  for (const e of session.extents) {
    expect(e.offset % CLUSTER).toBe(0);
    expect(e.length).toBeGreaterThan(0);
    if (e.offset + e.length !== session.virtualSizeBytes) expect(e.length % CLUSTER).toBe(0);
    expect(e.offset).toBeGreaterThanOrEqual(end);
    end = e.offset + e.length;
  }
  expect(end).toBeLessThanOrEqual(session.virtualSizeBytes);
}

/** The clusters a write of `length` bytes at `offset` touches, as merged extents. */
function clustersOf(...writes: Array<[number, number]>): DiskExtent[] {
  const set = new Set<number>();
  for (const [offset, length] of writes) {
    for (let c = Math.floor(offset / CLUSTER); c <= Math.floor((offset + length - 1) / CLUSTER); c++)
      set.add(c);
  }
  const out: DiskExtent[] = [];
  for (const c of [...set].sort((a, b) => a - b)) {
    const prev = out.at(-1);
    if (prev && prev.offset + prev.length === c * CLUSTER)
      out[out.length - 1] = { ...prev, length: prev.length + CLUSTER };
    else out.push({ offset: c * CLUSTER, length: CLUSTER });
  }
  return out;
}

async function expectCode(call: Promise<unknown>, code: HypervisorErrorCode): Promise<void> {
  const e = await call.then(
    () => null,
    (err: unknown) => err,
  );
  if (!(e instanceof HypervisorError)) throw new Error(`expected HypervisorError ${code}, got ${String(e)}`);
  expect(e.code).toBe(code);
}

export function describeBackupDriverContract(
  label: string,
  makeHarness: () => Promise<BackupDriverHarness>,
): void {
  describe(`BackupCapableDriver contract: ${label}`, () => {
    let h: BackupDriverHarness;

    beforeEach(async () => {
      h = await makeHarness();
    }, CASE_TIMEOUT_MS);
    afterEach(async () => {
      await h?.dispose();
    }, CASE_TIMEOUT_MS);

    const noProgress = (): void => undefined;
    const SIZE_MIB = 8;

    /** A stopped server with data in its first cluster and a few bytes at 5 MiB. */
    const stoppedServer = async (): Promise<ServerRef> => {
      const server = await h.makeServer({ running: false, sizeMiB: SIZE_MIB });
      await h.writeDisk(server, 0, Buffer.alloc(CLUSTER, 'a'));
      await h.writeDisk(server, 5 * MIB + 3, Buffer.from('0123456789'));
      return server;
    };

    /** A full backup whose checkpoint is kept: the base of the next incremental one. */
    const baseBackup = async (server: ServerRef): Promise<string> => {
      const cp = checkpointName();
      const s = await h.driver.openBackupRead(server, { since: null, checkpoint: cp });
      await s.close({ keepCheckpoint: true });
      return cp;
    };

    it(
      'a full read of a stopped disk: reason, consistency, aligned extents, the disk byte for byte',
      async () => {
        const server = await stoppedServer();
        const cp = checkpointName();
        const s = await h.driver.openBackupRead(server, { since: null, checkpoint: cp });
        try {
          expect(s.mode).toBe('full');
          expect(s.fullReason).toBe('no_previous_backup');
          expect(s.consistency).toBe('stopped');
          expect(s.checkpoint).toBe(cp);
          expect(s.virtualSizeBytes).toBe(SIZE_MIB * MIB);
          expectWellFormed(s);
          expect(sha256(await assemble(s))).toBe(await h.diskDigest(server));
          expect((await s.read(5 * MIB + 3, 10)).toString()).toBe('0123456789');
          // Into a reused buffer: the same bytes, holes zeroed over what it held, in the buffer itself.
          const into = Buffer.alloc(6 * MIB + 16, 0xee);
          const reused = await s.read(0, 6 * MIB, { into });
          expect(reused.buffer).toBe(into.buffer);
          expect(reused.byteOffset).toBe(into.byteOffset);
          expect(reused.equals(await s.read(0, 6 * MIB))).toBe(true);
          expect(reused.subarray(CLUSTER, 5 * MIB).equals(Buffer.alloc(5 * MIB - CLUSTER))).toBe(true);
          expect(into[6 * MIB]).toBe(0xee); // nothing past the length
        } finally {
          await s.close({ keepCheckpoint: true });
        }
        await s.close({ keepCheckpoint: true }); // idempotent
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'an incremental read lists exactly the 64 KiB clusters written since its base',
      async () => {
        const server = await stoppedServer();
        const cp1 = await baseBackup(server);
        const writes: Array<[number, number]> = [
          [3 * CLUSTER + 100, 10],
          [1 * MIB, 2 * CLUSTER],
          [7 * MIB - 5, 10],
        ];
        for (const [offset, length] of writes) await h.writeDisk(server, offset, Buffer.alloc(length, 'z'));

        const cp2 = checkpointName();
        const s = await h.driver.openBackupRead(server, { since: cp1, checkpoint: cp2 });
        try {
          expect(s.mode).toBe('incremental');
          expect(s.fullReason).toBeNull();
          expect(s.extents).toEqual(clustersOf(...writes));
          expect((await s.read(3 * CLUSTER + 100, 10)).toString()).toBe('z'.repeat(10));
          expect((await s.read(0, 16)).toString()).toBe('a'.repeat(16));
        } finally {
          await s.close({ keepCheckpoint: true });
        }
        // Nothing written since: an incremental read with nothing in it.
        const s3 = await h.driver.openBackupRead(server, { since: cp2, checkpoint: checkpointName() });
        expect(s3.mode).toBe('incremental');
        expect(s3.extents).toEqual([]);
        await s3.close({ keepCheckpoint: true });
        // The older checkpoint was dropped when the newer one was kept.
        const old = await h.driver.openBackupRead(server, { since: cp1, checkpoint: checkpointName() });
        expect(old.fullReason).toBe('checkpoint_missing');
        await old.close({ keepCheckpoint: false });
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'a checkpoint that is not there gives a full read saying so',
      async () => {
        const server = await stoppedServer();
        const s = await h.driver.openBackupRead(server, {
          since: checkpointName(),
          checkpoint: checkpointName(),
        });
        expect(s.mode).toBe('full');
        expect(s.fullReason).toBe('checkpoint_missing');
        expect(sha256(await assemble(s))).toBe(await h.diskDigest(server));
        await s.close({ keepCheckpoint: false });
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'close without keeping the checkpoint leaves the previous one the base',
      async () => {
        const server = await stoppedServer();
        const cp1 = await baseBackup(server);
        await h.writeDisk(server, 2 * MIB, Buffer.alloc(10, 'x'));
        const cp2 = checkpointName();
        const failed = await h.driver.openBackupRead(server, { since: cp1, checkpoint: cp2 });
        expect(failed.extents).toEqual(clustersOf([2 * MIB, 10]));
        await failed.close({ keepCheckpoint: false });
        await h.writeDisk(server, 4 * MIB, Buffer.alloc(10, 'y'));

        const s = await h.driver.openBackupRead(server, { since: cp1, checkpoint: checkpointName() });
        expect(s.mode).toBe('incremental');
        expect(s.extents).toEqual(clustersOf([2 * MIB, 10], [4 * MIB, 10]));
        await s.close({ keepCheckpoint: true });
        const gone = await h.driver.openBackupRead(server, { since: cp2, checkpoint: checkpointName() });
        expect(gone.fullReason).toBe('checkpoint_missing');
        await gone.close({ keepCheckpoint: false });
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'restoreDiskFrom rebuilds a disk byte for byte from a read, and drops its checkpoints',
      async () => {
        const source = await stoppedServer();
        const target = await h.makeServer({ running: false, sizeMiB: SIZE_MIB });
        await h.writeDisk(target, 3 * MIB, Buffer.alloc(CLUSTER, 'q'));
        const targetCp = await baseBackup(target);

        const s = await h.driver.openBackupRead(source, { since: null, checkpoint: checkpointName() });
        const progress: number[] = [];
        await h.driver.restoreDiskFrom(
          target,
          s.virtualSizeBytes,
          async (disk) => {
            for (const e of s.extents) await disk.write(e.offset, await s.read(e.offset, e.length));
          },
          (pct) => progress.push(pct),
        );
        await s.close({ keepCheckpoint: false });
        expect(await h.diskDigest(target)).toBe(await h.diskDigest(source));
        expect(progress.at(-1)).toBe(100);

        const next = await h.driver.openBackupRead(target, { since: targetCp, checkpoint: checkpointName() });
        expect(next.mode).toBe('full');
        expect(next.fullReason).toBe('checkpoint_missing');
        await next.close({ keepCheckpoint: false });
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'a fill that rejects leaves the disk untouched and its rejection passes through',
      async () => {
        const server = await stoppedServer();
        const cp = await baseBackup(server);
        const before = await h.diskDigest(server);
        const boom = new Error('store unreachable');
        const outcome = await h.driver
          .restoreDiskFrom(
            server,
            SIZE_MIB * MIB,
            async (disk) => {
              await disk.write(0, Buffer.alloc(CLUSTER, 'n'));
              throw boom;
            },
            noProgress,
          )
          .then(
            () => null,
            (e: unknown) => e,
          );
        expect(outcome).toBe(boom);
        expect(await h.diskDigest(server)).toBe(before);
        const s = await h.driver.openBackupRead(server, { since: cp, checkpoint: checkpointName() });
        expect(s.mode).toBe('incremental');
        await s.close({ keepCheckpoint: false });
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'cancellation: an aborted open and an abort during the fill are cancelled, the disk untouched',
      async () => {
        const server = await stoppedServer();
        const before = await h.diskDigest(server);
        const aborted = new AbortController();
        aborted.abort();
        await expectCode(
          h.driver.openBackupRead(server, {
            since: null,
            checkpoint: checkpointName(),
            signal: aborted.signal,
          }),
          'cancelled',
        );
        const ac = new AbortController();
        await expectCode(
          h.driver.restoreDiskFrom(
            server,
            SIZE_MIB * MIB,
            async (disk) => {
              await disk.write(0, Buffer.alloc(CLUSTER, 'n'));
              ac.abort();
              await disk.write(CLUSTER, Buffer.alloc(CLUSTER, 'n')).catch(() => undefined);
            },
            noProgress,
            { signal: ac.signal },
          ),
          'cancelled',
        );
        expect(await h.diskDigest(server)).toBe(before);
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'restoreDiskFrom refuses a running server; an unknown domain is domain_not_found',
      async () => {
        const running = await h.makeServer({ running: true, sizeMiB: SIZE_MIB });
        await expectCode(
          h.driver.restoreDiskFrom(running, SIZE_MIB * MIB, async () => undefined, noProgress),
          'invalid_power_state',
        );
        const ghost: ServerRef = { ...running, domain: `${running.domain}-ghost` };
        await expectCode(
          h.driver.openBackupRead(ghost, { since: null, checkpoint: checkpointName() }),
          'domain_not_found',
        );
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'a running server is read live; a checkpoint made live is the base of an offline incremental read',
      async () => {
        const server = await h.makeServer({ running: true, sizeMiB: SIZE_MIB });
        const cp1 = checkpointName();
        const s = await h.driver.openBackupRead(server, { since: null, checkpoint: cp1 });
        expect(s.mode).toBe('full');
        expect(['quiesced', 'crash_consistent']).toContain(s.consistency);
        expect(s.virtualSizeBytes).toBe(SIZE_MIB * MIB);
        expectWellFormed(s);
        expect(sha256(await assemble(s))).toBe(await h.diskDigest(server));
        await s.close({ keepCheckpoint: true });

        await h.driver.stop(server, { graceSeconds: h.stopGraceSeconds ?? 1 });
        await h.writeDisk(server, 6 * MIB, Buffer.alloc(10, 'w'));
        const cp2 = checkpointName();
        const offline = await h.driver.openBackupRead(server, { since: cp1, checkpoint: cp2 });
        expect(offline.mode).toBe('incremental');
        expect(offline.extents).toEqual(clustersOf([6 * MIB, 10]));
        await offline.close({ keepCheckpoint: true });

        // ...and a checkpoint made offline is the base of a live one.
        await h.driver.start(server);
        const live = await h.driver.openBackupRead(server, { since: cp2, checkpoint: checkpointName() });
        expect(live.mode).toBe('incremental');
        expect(live.extents).toEqual([]);
        await live.close({ keepCheckpoint: true });
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'after a snapshot restore the next read is full: the checkpoint went with the old disk',
      async () => {
        const server = await stoppedServer();
        const snap = { id: nextBackupId++, snapshotDir: h.snapshotDir };
        await h.driver.createSnapshot(server, snap, noProgress);
        const cp = await baseBackup(server);
        await h.driver.restoreSnapshot(server, snap, noProgress);
        const s = await h.driver.openBackupRead(server, { since: cp, checkpoint: checkpointName() });
        expect(s.fullReason).toBe('checkpoint_missing');
        await s.close({ keepCheckpoint: true });
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'after a hypervisor crash the checkpoint is not trusted: full read, bitmap_inconsistent',
      async () => {
        if (!h.crashHypervisor) return;
        const server = await h.makeServer({ running: true, sizeMiB: SIZE_MIB });
        const cp = await baseBackup(server);
        await h.crashHypervisor(server);
        const s = await h.driver.openBackupRead(server, { since: cp, checkpoint: checkpointName() });
        expect(s.mode).toBe('full');
        expect(s.fullReason).toBe('bitmap_inconsistent');
        expect(sha256(await assemble(s))).toBe(await h.diskDigest(server));
        await s.close({ keepCheckpoint: true });
        // The new checkpoint is sound: the next read is incremental again.
        const next = await h.driver.openBackupRead(server, {
          since: s.checkpoint,
          checkpoint: checkpointName(),
        });
        expect(next.mode).toBe('incremental');
        await next.close({ keepCheckpoint: true });
      },
      CASE_TIMEOUT_MS,
    );
  });
}
