import { throwIfAborted } from '../../driver-errors';
import { BackupReadOptions, BackupReadSession, ServerRef } from '../../hypervisor-driver';
import { DomainDisk } from '../domain-xml';
import { ImageLock } from '../tools/qemu-io';
import { allInOrder } from '../together';
import { Toolbox } from '../tools/toolbox';
import {
  dropCheckpointsExcept,
  dropKnownOffline,
  dropOffline,
  OfflineCheckpoints,
  offlineCheckpointXml,
  offlineCheckpoints,
  offlineFullReason,
  recordOffline,
} from './checkpoints';
import { clusterAligned, MappedImage, readSession } from './mapped-image';

/** How long a shut-off disk may stay locked for one backup read. */
const READ_LOCK_TIMEOUT_MS = 24 * 60 * 60_000;

/** What the caller already asked of the domain and the disk (the driver's first look), if anything. */
export interface OfflineFacts extends OfflineCheckpoints {
  readonly disks: readonly DomainDisk[];
}

/**
 * A backup read of a shut-off server's disk, in place: the new checkpoint's bitmap is added, then one
 * read-only qemu-io holds the disk for the whole session — qemu's image lock, so the domain cannot
 * start and nothing writes the disk while it is read. Under that lock the image's own tables say where
 * its data lies and the base checkpoint's bitmap which clusters changed (qcow2-layout.ts), and the
 * view is read from the disk at those offsets. Nothing is copied first: a point-in-time copy would
 * cost a read and a write of every allocated byte, where an incremental read costs only the changed
 * clusters. The price is that the server cannot start during the read.
 *
 * The session's time is its tool processes (each a good part of a second on a busy host), so only what
 * depends on an earlier answer waits for it: libvirt's record of the new checkpoint is written while
 * the disk is read (only `close` needs it), and `close` drops the base's record while it lets the lock
 * go. A record that could not be written leaves the next backup to read the whole disk
 * (`checkpoint_missing`), as a lost record would.
 */
export async function openOfflineRead(
  tools: Toolbox,
  server: ServerRef,
  dom: string,
  opts: BackupReadOptions,
  known: OfflineFacts | null = null,
): Promise<BackupReadSession> {
  const { signal } = opts;
  const disk = server.diskPath;
  const facts: OfflineFacts =
    known ??
    (await allInOrder([offlineCheckpoints(tools, dom, disk), tools.virsh.disks(dom, signal)] as const).then(
      ([seen, disks]) => ({ ...seen, disks }),
    ));
  const { reason, records, bitmaps } = offlineFullReason(facts, opts.since);
  const base = reason === null ? opts.since : null;
  const xml = await offlineCheckpointXml(server, dom, opts.checkpoint, base, facts.disks);
  // Everything but the base goes: stale checkpoints, broken ones, a leftover of a retried backup.
  await dropOffline(tools, dom, disk, {
    records: records.filter((n) => n !== base),
    bitmaps: bitmaps.filter((n) => n !== base),
  });
  throwIfAborted(signal);
  await tools.qemuImg.bitmap('add', disk, opts.checkpoint);
  // Settled, never rejected: whatever follows waits for it before it looks at libvirt's records.
  const recorded: Promise<void> = recordOffline(tools, dom, xml).catch(() => undefined);
  // Set as they are made, for the clean-up of a failed open.
  const held: { lock: ImageLock | null; image: MappedImage | null } = { lock: null, image: null };
  try {
    const lock = await tools.qemuIo.holdImageLock(disk, READ_LOCK_TIMEOUT_MS, signal, 'hypervisor_error');
    held.lock = lock;
    const { image, dirty } = await MappedImage.openQcow2(disk, base);
    held.image = image;
    throwIfAborted(signal);
    return readSession({
      image,
      extents: dirty === null ? image.dataExtents() : clusterAligned(dirty, image.virtualSize),
      fullReason: reason,
      consistency: 'stopped',
      checkpoint: opts.checkpoint,
      release: async (keep) => {
        const unlocked = lock.release();
        await recorded;
        // The base and the new checkpoint are there (this call made them so, under the lock), the new
        // one's record unless writing it failed: then dropping falls back to asking what is there.
        const drop = keep ? base : opts.checkpoint;
        if (drop === null) return unlocked;
        await dropKnownOffline(tools, server, dom, drop, keep ? opts.checkpoint : base, unlocked);
      },
    });
  } catch (e) {
    await held.image?.close();
    await held.lock?.release();
    await recorded;
    await dropCheckpointsExcept(tools, server, dom, base).catch(() => undefined);
    throw e;
  }
}
