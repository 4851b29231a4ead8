import { constants as fsConstants, promises as fsp } from 'node:fs';

import { alignedView, DIRECT_IO_ALIGN } from '../../../common/aligned-buffers';

import { hvError, throwIfAborted } from '../../driver-errors';
import {
  BackupReadCallOptions,
  BackupReadSession,
  DiskExtent,
  FullReadReason,
  SnapshotConsistency,
} from '../../hypervisor-driver';
import { stepError } from '../errors';
import { MapEntry } from '../tools/qemu-img';
import { readQcow2Layout } from './qcow2-layout';

/** A qcow2 dirty bitmap's granularity (the cluster size, at most 64 KiB): extents are whole clusters. */
export const BITMAP_CLUSTER_BYTES = 64 * 1024;

/** `extents` rounded out to whole clusters, clipped to `size`, sorted and merged. */
export function clusterAligned(extents: readonly DiskExtent[], size: number): DiskExtent[] {
  const out: DiskExtent[] = [];
  const sorted = [...extents].sort((a, b) => a.offset - b.offset);
  for (const e of sorted) {
    if (e.length <= 0) continue;
    const start = Math.floor(e.offset / BITMAP_CLUSTER_BYTES) * BITMAP_CLUSTER_BYTES;
    const end = Math.min(
      size,
      Math.ceil((e.offset + e.length) / BITMAP_CLUSTER_BYTES) * BITMAP_CLUSTER_BYTES,
    );
    if (start >= end) continue;
    const prev = out.at(-1);
    if (prev && prev.offset + prev.length >= start) {
      out[out.length - 1] = {
        offset: prev.offset,
        length: Math.max(prev.offset + prev.length, end) - prev.offset,
      };
    } else {
      out.push({ offset: start, length: end - start });
    }
  }
  return out;
}

/**
 * The guest-visible bytes of a qcow2 image read in place: its map says where each data extent lies in
 * the file (an uncompressed qcow2 stores a guest range as one host range per map entry) — `qemu-img
 * map` for a push target, the image's own tables for a shut-off disk (`openQcow2`) — so a read is
 * `pread`s of the file, zeros elsewhere. Only for an image nothing writes while it is read (a push
 * target, or a shut-off disk under its image lock).
 */
export class MappedImage {
  private constructor(
    private readonly fh: fsp.FileHandle,
    /** The same file opened with O_DIRECT (null where the file system refuses it): see `read`. */
    private readonly direct: fsp.FileHandle | null,
    /** Data entries of the image itself (depth 0), in guest order. */
    private readonly data: readonly MapEntry[],
    readonly virtualSize: number,
  ) {}

  /** Opens `file` for reading along `entries` (its map); refuses what cannot be read in place. */
  static async open(file: string, entries: readonly MapEntry[], virtualSize: number): Promise<MappedImage> {
    const data = entries.filter((e) => e.depth === 0 && e.data && !e.zero);
    const unreadable = entries.find((e) => e.data && !e.zero && (e.depth !== 0 || e.offset === null));
    if (unreadable) {
      // A backing file's data or a compressed cluster: not where a pread of this file would find it.
      throw hvError('hypervisor_error', `${file}: data at ${unreadable.start} cannot be read in place`);
    }
    const fh = await MappedImage.openFile(file);
    return new MappedImage(fh, await MappedImage.openDirect(file), data, virtualSize);
  }

  /**
   * Opens a qcow2 for reading along its own tables (qcow2-layout.ts), with the ranges `bitmap` marks
   * dirty when one is named: no `qemu-img map`. The caller holds the image lock.
   */
  static async openQcow2(
    file: string,
    bitmap: string | null,
  ): Promise<{ image: MappedImage; dirty: DiskExtent[] | null }> {
    const fh = await MappedImage.openFile(file);
    try {
      const layout = await readQcow2Layout(fh, file, bitmap);
      const image = new MappedImage(fh, await MappedImage.openDirect(file), layout.data, layout.virtualSize);
      return { image, dirty: layout.dirty };
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw e;
    }
  }

  private static openFile(file: string): Promise<fsp.FileHandle> {
    return fsp.open(file, 'r').catch((e: unknown) => {
      throw stepError(e, 'hypervisor_error', `open ${file}`);
    });
  }

  private static openDirect(file: string): Promise<fsp.FileHandle | null> {
    return fsp.open(file, fsConstants.O_RDONLY | fsConstants.O_DIRECT).catch(() => null);
  }

  /** The merged ranges holding data (what a full read lists). */
  dataExtents(): DiskExtent[] {
    return clusterAligned(
      this.data.map((e) => ({ offset: e.start, length: e.length })),
      this.virtualSize,
    );
  }

  /** The guest bytes at `offset`, into `into` when given (see `BackupReadSession.read`). */
  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    if (into && into.length < length) throw new RangeError(`read: ${into.length} bytes, ${length} needed`);
    // A buffer that is not fresh is zeroed only where no data extent writes over it.
    const out = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    const end = offset + length;
    let filled = offset;
    // First entry that ends after `offset` (entries are sorted and disjoint).
    let lo = 0;
    let hi = this.data.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.data[mid].start + this.data[mid].length <= offset) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.data.length && this.data[i].start < end; i++) {
      const e = this.data[i];
      const from = Math.max(offset, e.start);
      const to = Math.min(end, e.start + e.length);
      if (from > filled) out.fill(0, filled - offset, from - offset);
      filled = to;
      await this.readPiece(out, from - offset, to - from, (e.offset as number) + (from - e.start), from);
    }
    if (end > filled) out.fill(0, filled - offset);
    return out;
  }

  /**
   * `length` bytes of the file at `position` into `out` at `at`. With O_DIRECT when the memory, the
   * position and the length allow it (a reused chunk buffer in page-aligned memory, clusters at
   * cluster-aligned offsets): the bytes come from the disk straight into the buffer, not through the
   * page cache, whose pages cost this host more CPU per GiB than the copy itself (docs/benchmarks.md
   * *6*). O_DIRECT reads see what was written through the page cache (the kernel writes a range's
   * dirty pages back before it reads it directly).
   */
  private async readPiece(
    out: Buffer,
    at: number,
    length: number,
    position: number,
    guest: number,
  ): Promise<void> {
    const view =
      this.direct && length % DIRECT_IO_ALIGN === 0 && position % DIRECT_IO_ALIGN === 0
        ? alignedView(out.subarray(at), length)
        : null;
    const { bytesRead } = view
      ? await this.direct!.read(view, 0, length, position)
      : await this.fh.read(out, at, length, position);
    if (bytesRead !== length) throw hvError('hypervisor_error', `short read of an image at ${guest}`);
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => undefined);
    await this.direct?.close().catch(() => undefined);
  }
}

/** What a backup read session is made of; `release` runs once, on the first close. */
export interface ReadSessionParts {
  readonly image: MappedImage;
  readonly extents: readonly DiskExtent[];
  readonly fullReason: FullReadReason | null;
  readonly consistency: SnapshotConsistency;
  readonly checkpoint: string;
  readonly release: (keepCheckpoint: boolean) => Promise<void>;
}

export function readSession(p: ReadSessionParts): BackupReadSession {
  let closing: Promise<void> | null = null;
  return {
    virtualSizeBytes: p.image.virtualSize,
    mode: p.fullReason === null ? 'incremental' : 'full',
    fullReason: p.fullReason,
    extents: p.extents,
    consistency: p.consistency,
    checkpoint: p.checkpoint,
    async read(offset: number, length: number, o: BackupReadCallOptions = {}): Promise<Buffer> {
      throwIfAborted(o.signal);
      if (closing) throw hvError('hypervisor_error', 'read after close');
      const bad = !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0;
      if (bad || offset + length > p.image.virtualSize) {
        throw hvError(
          'hypervisor_error',
          `range ${offset}+${length} outside the disk (${p.image.virtualSize})`,
        );
      }
      return p.image.read(offset, length, o.into);
    },
    close({ keepCheckpoint }): Promise<void> {
      closing ??= (async () => {
        await p.image.close();
        await p.release(keepCheckpoint).catch(() => undefined);
      })();
      return closing;
    },
  };
}
