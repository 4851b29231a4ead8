import { cancelled, progressGuard, throwIfAborted } from '../driver-errors';
import {
  BackupReadCallOptions,
  BackupReadOptions,
  BackupReadSession,
  DiskExtent,
  DiskImageWriter,
  FullReadReason,
  ObservedPowerState,
  SnapshotConsistency,
} from '../hypervisor-driver';
import { fakeError } from './fault-injection';

/**
 * The fake driver's backup side (see `BackupCapableDriver`): checkpoints as sets of written 64 KiB
 * clusters, so an incremental read lists exactly what the guest wrote since its base, and disks
 * rebuilt from a writer in a buffer that replaces the disk only when the fill succeeded.
 */

/** The granularity of a qcow2 dirty bitmap (its cluster size), which the fake copies. */
export const FAKE_BACKUP_CLUSTER_BYTES = 64 * 1024;

interface Checkpoint {
  /** Indices of the clusters written since the checkpoint was made. */
  readonly dirty: Set<number>;
  /** False after a simulated crash: its bitmap cannot be trusted any more. */
  consistent: boolean;
}

/** The checkpoints of one disk: each records every write made after it, as qemu's bitmaps do. */
export class FakeCheckpoints {
  private readonly byName = new Map<string, Checkpoint>();

  names(): string[] {
    return [...this.byName.keys()];
  }

  /** Records a write of `length` bytes at `offset` in every checkpoint. */
  recordWrite(offset: number, length: number): void {
    if (length <= 0) return;
    const first = Math.floor(offset / FAKE_BACKUP_CLUSTER_BYTES);
    const last = Math.floor((offset + length - 1) / FAKE_BACKUP_CLUSTER_BYTES);
    for (const cp of this.byName.values()) for (let c = first; c <= last; c++) cp.dirty.add(c);
  }

  /** A crash of the hypervisor: every bitmap is left "in use" and cannot be trusted. */
  breakAll(): void {
    for (const cp of this.byName.values()) cp.consistent = false;
  }

  clear(): void {
    this.byName.clear();
  }

  add(name: string): void {
    this.byName.set(name, { dirty: new Set(), consistent: true });
  }

  delete(name: string): void {
    this.byName.delete(name);
  }

  /** Keeps only `name` (when present). */
  keepOnly(name: string): void {
    for (const n of this.byName.keys()) if (n !== name) this.byName.delete(n);
  }

  get(name: string): Checkpoint | undefined {
    return this.byName.get(name);
  }
}

/** What the fake's backup code needs of a domain. */
/** A fake domain's power: what a real one can be while it exists. */
export type FakePower = Exclude<ObservedPowerState, 'missing'>;

/** Whether qemu holds the disk: a paused guest's does, a crashed (shut off) one's does not. */
export function diskInUse(power: FakePower): boolean {
  return power === 'running' || power === 'paused';
}

export interface FakeBackupDisk {
  disk: Buffer;
  power: FakePower;
  readonly checkpoints: FakeCheckpoints;
}

/** Sorted, merged extents of the clusters `clusters`, clipped to `size`. */
function clusterExtents(clusters: Iterable<number>, size: number): DiskExtent[] {
  const extents: DiskExtent[] = [];
  for (const c of [...clusters].sort((a, b) => a - b)) {
    const offset = c * FAKE_BACKUP_CLUSTER_BYTES;
    if (offset >= size) continue;
    const end = Math.min(size, offset + FAKE_BACKUP_CLUSTER_BYTES);
    const prev = extents.at(-1);
    if (prev && prev.offset + prev.length === offset)
      extents[extents.length - 1] = { ...prev, length: end - prev.offset };
    else extents.push({ offset, length: end - offset });
  }
  return extents;
}

/** The clusters of `disk` holding a byte other than zero: the fake's "allocated" clusters. */
function allocatedClusters(disk: Buffer): number[] {
  const clusters: number[] = [];
  for (let off = 0, c = 0; off < disk.length; off += FAKE_BACKUP_CLUSTER_BYTES, c++) {
    const slice = disk.subarray(off, off + FAKE_BACKUP_CLUSTER_BYTES);
    if (slice.some((b) => b !== 0)) clusters.push(c);
  }
  return clusters;
}

/**
 * Opens a read of `d`: a copy of its content now, the extents written since `since` (or the allocated
 * ones for a full read) and checkpoint `checkpoint`, made now, recording what the guest writes next.
 */
export function openFakeBackupRead(
  d: FakeBackupDisk,
  opts: BackupReadOptions,
  consistency: SnapshotConsistency,
): BackupReadSession {
  throwIfAborted(opts.signal);
  const base = opts.since === null ? undefined : d.checkpoints.get(opts.since);
  let fullReason: FullReadReason | null = null;
  if (opts.since === null) fullReason = 'no_previous_backup';
  else if (!base) fullReason = 'checkpoint_missing';
  else if (!base.consistent) fullReason = 'bitmap_inconsistent';
  // Broken checkpoints are worth nothing; a leftover of the same name (a retried backup) neither.
  for (const name of d.checkpoints.names()) {
    if (!d.checkpoints.get(name)?.consistent || name === opts.checkpoint) d.checkpoints.delete(name);
  }
  const content = Buffer.from(d.disk);
  const extents =
    fullReason === null && base
      ? clusterExtents(base.dirty, content.length)
      : clusterExtents(allocatedClusters(content), content.length);
  d.checkpoints.add(opts.checkpoint);
  let closed = false;
  return {
    virtualSizeBytes: content.length,
    mode: fullReason === null ? 'incremental' : 'full',
    fullReason,
    extents,
    consistency,
    checkpoint: opts.checkpoint,
    async read(offset: number, length: number, o: BackupReadCallOptions = {}): Promise<Buffer> {
      throwIfAborted(o.signal);
      if (closed) throw fakeError('hypervisor_error', 'read after close');
      requireRange(offset, length, content.length);
      if (o.into && o.into.length < length) throw new RangeError(`read: ${o.into.length} < ${length}`);
      if (!o.into) return Buffer.from(content.subarray(offset, offset + length));
      content.copy(o.into, 0, offset, offset + length);
      return o.into.subarray(0, length);
    },
    async close({ keepCheckpoint }): Promise<void> {
      if (closed) return;
      closed = true;
      if (keepCheckpoint) d.checkpoints.keepOnly(opts.checkpoint);
      else d.checkpoints.delete(opts.checkpoint);
    },
  };
}

function requireRange(offset: number, length: number, size: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw fakeError('hypervisor_error', `bad range ${offset}+${length}`);
  }
  if (offset + length > size) throw fakeError('hypervisor_error', `range ${offset}+${length} beyond ${size}`);
}

/**
 * Builds a disk of `size` bytes from `fill` in a buffer (the fake's temporary file, registered through
 * `tempFile` while it exists) and puts it in place of `d`'s disk only when the fill resolved, the call
 * was not cancelled and the domain is still stopped. Every checkpoint of the old disk is dropped.
 */
export async function fakeRestoreDiskFrom(
  d: FakeBackupDisk,
  size: number,
  fill: (disk: DiskImageWriter) => Promise<void>,
  onProgress: (pct: number) => void,
  signal: AbortSignal | undefined,
  tempFile: { open(): object; isOurs(owner: object): boolean; remove(owner: object): void },
): Promise<void> {
  throwIfAborted(signal);
  if (!Number.isSafeInteger(size) || size <= 0) throw fakeError('hypervisor_error', `bad disk size ${size}`);
  requireStopped(d);
  const report = progressGuard(onProgress);
  const content = Buffer.alloc(size);
  const owner = tempFile.open();
  let written = 0;
  try {
    report(0);
    await fill({
      async write(offset: number, data: Buffer): Promise<void> {
        throwIfAborted(signal);
        if (!tempFile.isOurs(owner))
          throw fakeError('copy_failed', 'restore file was removed during the fill');
        requireRange(offset, data.length, size);
        data.copy(content, offset);
        written += data.length;
        report(Math.min(99, (written / size) * 100));
      },
    });
    throwIfAborted(signal);
    if (!tempFile.isOurs(owner)) throw fakeError('copy_failed', 'restore file was removed during the fill');
    requireStopped(d);
    d.disk = content;
    d.checkpoints.clear();
    report(100);
  } catch (e) {
    // The fill's own rejection passes through unchanged; a cancellation wins over what it caused.
    if (signal?.aborted) throw cancelled(`fake: aborted by caller (${String(e)})`);
    throw e;
  } finally {
    tempFile.remove(owner);
  }
}

function requireStopped(d: FakeBackupDisk): void {
  if (diskInUse(d.power)) {
    throw fakeError('invalid_power_state', 'domain is running', 'hypervisor_server_must_be_stopped');
  }
}
