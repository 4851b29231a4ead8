import { throwIfAborted } from '../../driver-errors';
import { BackupReadOptions, BackupReadSession, ServerRef } from '../../hypervisor-driver';
import { DomainDisk } from '../domain-xml';
import { DiskExport } from '../tools/qemu-nbd';
import { allInOrder, together } from '../together';
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
import { clusterAligned, MappedImage, mappedSize, readSession } from './mapped-image';

/** How long a shut-off disk may stay locked for one backup read. */
const READ_LOCK_TIMEOUT_MS = 24 * 60 * 60_000;

/** What the caller already asked of the domain and the disk (the driver's first look), if anything. */
export interface OfflineFacts extends OfflineCheckpoints {
  readonly disks: readonly DomainDisk[];
}

/**
 * A backup read of a shut-off server's disk, in place: the new checkpoint's bitmap is added, then one
 * read-only qemu-nbd holds the disk for the whole session — qemu's image lock, so the domain cannot
 * start and nothing writes the disk while it is read — and serves the base checkpoint's bitmap, whose
 * dirty ranges are the changed extents (see QemuNbd). The view is the disk as it was when the
 * checkpoint was made, read from the disk itself at the offsets `qemu-img map` gives. Nothing is copied
 * first: a point-in-time copy would cost a read and a write of every allocated byte, where an
 * incremental read costs only the changed clusters. The price is that the server cannot start during
 * the read.
 *
 * The session's time is its tool processes (each a good part of a second on a busy host), so only what
 * depends on an earlier answer waits for it: libvirt's record of the new checkpoint is written while
 * the lock is taken and the disk mapped, and `close` drops the base's record while it lets the lock go.
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
  // Set as they are made, for the clean-up of a failed open.
  const held: { served: DiskExport | null; image: MappedImage | null } = { served: null, image: null };
  try {
    const [, opened] = await together(signal, [
      () => recordOffline(tools, dom, xml),
      async (s: AbortSignal) => {
        const served = await tools.qemuNbd.serve(disk, base, READ_LOCK_TIMEOUT_MS, s);
        held.served = served;
        // Both only read the disk, sharing the lock qemu-nbd holds; the map also gives the virtual size.
        const [changed, entries] = await together(s, [
          (s2: AbortSignal) => (base === null ? Promise.resolve(null) : served.dirtyExtents(s2)),
          (s2: AbortSignal) => tools.qemuImg.map(disk, { signal: s2 }),
        ] as const);
        const size = mappedSize(entries);
        const image = await MappedImage.open(disk, entries, size);
        held.image = image;
        return {
          served,
          image,
          extents: changed === null ? image.dataExtents() : clusterAligned(changed, size),
        };
      },
    ] as const);
    throwIfAborted(signal);
    return readSession({
      image: opened.image,
      extents: opened.extents,
      fullReason: reason,
      consistency: 'stopped',
      checkpoint: opts.checkpoint,
      release: async (keep) => {
        const unlocked = opened.served.release();
        // Exactly the base and the new checkpoint are there (this call made them so, under the lock).
        const drop = keep ? base : opts.checkpoint;
        if (drop === null) return unlocked;
        await dropKnownOffline(tools, server, dom, drop, keep ? opts.checkpoint : base, unlocked);
      },
    });
  } catch (e) {
    await held.image?.close();
    await held.served?.release();
    await dropCheckpointsExcept(tools, server, dom, base).catch(() => undefined);
    throw e;
  }
}
