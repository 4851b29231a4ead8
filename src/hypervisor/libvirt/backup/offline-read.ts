import { throwIfAborted } from '../../driver-errors';
import { BackupReadOptions, BackupReadSession, ServerRef } from '../../hypervisor-driver';
import { ImageLock } from '../tools/qemu-io';
import { allInOrder, together } from '../together';
import { Toolbox } from '../tools/toolbox';
import {
  addOffline,
  dropCheckpointsExcept,
  dropKnownOffline,
  dropOffline,
  offlineFullReason,
} from './checkpoints';
import { clusterAligned, MappedImage, readSession } from './mapped-image';

/** How long a shut-off disk may stay locked for one backup read. */
const READ_LOCK_TIMEOUT_MS = 24 * 60 * 60_000;

/**
 * A backup read of a shut-off server's disk, in place: the new checkpoint's bitmap is added, then
 * qemu's image lock is held (qemu-io, read-only) for the whole session, so the domain cannot start and
 * nothing writes the disk while it is read — the view is the disk as it was when the checkpoint was
 * made, read from the disk itself at the offsets `qemu-img map` gives. Nothing is copied first: a
 * point-in-time copy would cost a read and a write of every allocated byte, where an incremental read
 * costs only the changed clusters. The price is that the server cannot start during the read.
 * The changed extents come from the base checkpoint's bitmap (see QemuNbd).
 */
export async function openOfflineRead(
  tools: Toolbox,
  server: ServerRef,
  dom: string,
  opts: BackupReadOptions,
): Promise<BackupReadSession> {
  const { signal } = opts;
  const disk = server.diskPath;
  // Independent questions at once: on a busy host each tool process costs a good part of a second.
  const [{ reason, records, bitmaps }, disks] = await allInOrder([
    offlineFullReason(tools, dom, disk, opts.since),
    tools.virsh.disks(dom, signal),
  ] as const);
  const base = reason === null ? opts.since : null;
  // Everything but the base goes: stale checkpoints, broken ones, a leftover of a retried backup.
  await dropOffline(tools, dom, disk, {
    records: records.filter((n) => n !== base),
    bitmaps: bitmaps.filter((n) => n !== base),
  });
  throwIfAborted(signal);
  await addOffline(tools, server, dom, opts.checkpoint, base, disks);
  let lock: ImageLock | null = null;
  let image: MappedImage | null = null;
  try {
    lock = await tools.qemuIo.holdImageLock(disk, READ_LOCK_TIMEOUT_MS, undefined);
    throwIfAborted(signal);
    // All three only read the disk, sharing the lock qemu-io holds.
    const [info, changed, entries] = await together(signal, [
      () => tools.qemuImg.info(disk, false),
      (s: AbortSignal) => (base === null ? Promise.resolve(null) : tools.qemuNbd.dirtyExtents(disk, base, s)),
      (s: AbortSignal) => tools.qemuImg.map(disk, { signal: s }),
    ] as const);
    image = await MappedImage.open(disk, entries, info.virtualSize);
    throwIfAborted(signal);
    const held = lock;
    return readSession({
      image,
      extents: changed === null ? image.dataExtents() : clusterAligned(changed, info.virtualSize),
      fullReason: reason,
      consistency: 'stopped',
      checkpoint: opts.checkpoint,
      release: async (keep) => {
        await held.release();
        // Exactly the base and the new checkpoint are there (this call made them so, under the lock).
        const drop = keep ? base : opts.checkpoint;
        if (drop !== null) await dropKnownOffline(tools, server, dom, drop, keep ? opts.checkpoint : base);
      },
    });
  } catch (e) {
    await image?.close();
    await lock?.release();
    await dropCheckpointsExcept(tools, server, dom, base).catch(() => undefined);
    throw e;
  }
}
