import { constants as fsConstants, promises as fsp } from 'node:fs';

import { alignedView, alignUp, DIRECT_IO_ALIGN } from '../../../common/aligned-buffers';
import { hvError } from '../../driver-errors';
import { DiskImageWriter, HypervisorError } from '../../hypervisor-driver';
import { QCOW2_ENTRY, QCOW2_HEADER, QCOW2_MAGIC } from './qcow2-format';

/*
 * A qcow2 image (version 3, https://gitlab.com/qemu-project/qemu/-/blob/master/docs/interop/qcow2.txt)
 * written directly by this process, for a disk rebuilt from a backup. Data clusters are allocated in
 * the order writes arrive, from cluster 1 on, and written in place (with O_DIRECT where the file system
 * takes it); the tables that map them (L1, L2, refcounts) are appended after the last data cluster when
 * the image is finished, and the header (cluster 0) is written last. Holes are never written: their
 * clusters stay unallocated, read as zeros, and take no space.
 *
 * What the tables will say is kept, until then, as the runs the writes made (guest clusters mapped to
 * consecutive host clusters, a few bytes each), grouped by the L2 table they fall in; each L2 table is
 * built only when it is written, one cluster at a time. So the writer's memory grows with the number
 * of writes, not with the data: a full table for every 512 MiB of guest space written would be 64 KiB
 * per GiB, 128 MiB for a 2 TiB disk, in a worker that should stay within 200 MB.
 *
 * Before this, a restore wrote through qemu-nbd over a socket (and before that, a raw file converted
 * by `qemu-img convert`): qemu wrote the same layout, but every byte crossed the socket once more and
 * the writes waited for qemu's replies. The image is checked with `qemu-img check` before it is used.
 */

const VERSION = 3;
/** Refcount entries are 16 bits (refcount_order 4), as `qemu-img create` makes them. */
const REFCOUNT_ORDER = 4;
/** Table entries whose cluster has refcount 1: a fresh image's every cluster. */
const COPIED = QCOW2_ENTRY.copied;
/** 64 KiB, qemu's default. */
export const QCOW2_DEFAULT_CLUSTER_BITS = 16;

export class Qcow2ImageWriter implements DiskImageWriter {
  private readonly clusterBytes: number;
  /** Guest clusters one L2 table maps. */
  private readonly l2Entries: number;
  /** Per L2 table index: the runs written to the guest clusters it maps (none: no table). */
  private readonly l2Runs = new Map<number, TableRuns>();
  /** The next host cluster a write takes. */
  private nextCluster = 1;
  /** Finished or abandoned: no more writes. */
  private closed = false;
  private fileClosed = false;

  private constructor(
    readonly file: string,
    readonly virtualSizeBytes: number,
    private readonly clusterBits: number,
    private readonly handle: fsp.FileHandle,
    private readonly direct: fsp.FileHandle | null,
  ) {
    this.clusterBytes = 2 ** clusterBits;
    this.l2Entries = this.clusterBytes / 8;
  }

  /**
   * Creates `file` (it must not exist; mode 0600: the customer's data goes in before the disk's owner
   * and mode do) for an image of `virtualSizeBytes`. `clusterBits` below 12 is refused: every cluster
   * must be whole O_DIRECT blocks.
   */
  static async create(
    file: string,
    virtualSizeBytes: number,
    o: { clusterBits?: number } = {},
  ): Promise<Qcow2ImageWriter> {
    const clusterBits = o.clusterBits ?? QCOW2_DEFAULT_CLUSTER_BITS;
    if (!Number.isInteger(clusterBits) || clusterBits < 12 || clusterBits > 21) {
      throw new RangeError(`qcow2: cluster bits ${clusterBits} outside 12–21`);
    }
    if (!Number.isSafeInteger(virtualSizeBytes) || virtualSizeBytes <= 0 || virtualSizeBytes % 512 !== 0) {
      throw new HypervisorError('hypervisor_error', `bad virtual size ${virtualSizeBytes}`, {
        retryable: false,
      });
    }
    const flags = fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_EXCL;
    const handle = await fsp.open(file, flags, 0o600);
    try {
      const direct = await fsp.open(file, fsConstants.O_WRONLY | fsConstants.O_DIRECT).catch((e) => {
        // tmpfs, for one, refuses O_DIRECT: the page cache then.
        if ((e as NodeJS.ErrnoException).code === 'EINVAL') return null;
        throw e;
      });
      return new Qcow2ImageWriter(file, virtualSizeBytes, clusterBits, handle, direct);
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  /**
   * Writes `data` at guest `offset`, which starts a cluster; `data` is whole clusters unless it ends
   * at the end of the disk. Clusters written before are written again in place. Writes may overlap in
   * time (each allocates its clusters before it waits).
   */
  async write(offset: number, data: Buffer): Promise<void> {
    if (this.closed) throw hvError('hypervisor_error', `${this.file}: written after it was finished`);
    const end = offset + data.length;
    if (!Number.isSafeInteger(offset) || offset < 0 || end > this.virtualSizeBytes || data.length === 0) {
      throw hvError(
        'hypervisor_error',
        `write ${offset}+${data.length} outside the disk (${this.virtualSizeBytes})`,
      );
    }
    if (
      offset % this.clusterBytes !== 0 ||
      (data.length % this.clusterBytes !== 0 && end !== this.virtualSizeBytes)
    ) {
      throw hvError(
        'hypervisor_error',
        `write ${offset}+${data.length} is not whole ${this.clusterBytes}-byte clusters`,
      );
    }
    const first = offset / this.clusterBytes;
    const count = Math.ceil(data.length / this.clusterBytes);
    // Every cluster gets its host cluster before the first wait, so writes overlapping in time never
    // take the same one; then one write per run of consecutive host clusters (a fresh range: one).
    const pieces = this.hostRuns(first, count);
    for (let p = 0; p < pieces.length; p += 3) {
      const [from, host, clusters] = [pieces[p] - first, pieces[p + 1], pieces[p + 2]];
      await this.writeAt(
        host * this.clusterBytes,
        data.subarray(from * this.clusterBytes, Math.min(data.length, (from + clusters) * this.clusterBytes)),
      );
    }
  }

  /**
   * Writes the tables and the header: the file is then a complete qcow2 image (not yet synced: the
   * caller fsyncs it once it has its owner and mode). Closes the file either way.
   */
  async finish(): Promise<void> {
    this.closed = true;
    try {
      await this.writeTables();
    } finally {
      await this.close();
    }
  }

  /** Closes the file, written or not (after a failure; the caller removes it). */
  async abandon(): Promise<void> {
    this.closed = true;
    await this.close();
  }

  /**
   * The host clusters of guest clusters `first`…`first + count - 1`, as runs [first guest cluster, first
   * host cluster, clusters], in guest order, consecutive host clusters in one run: clusters written
   * before keep theirs, the others take the next free ones, in guest order.
   */
  private hostRuns(first: number, count: number): number[] {
    const out: number[] = [];
    const add = (guest: number, host: number, clusters: number) => {
      const last = out.length - 3;
      if (last >= 0 && out[last + 1] + out[last + 2] === host) out[last + 2] += clusters;
      else out.push(guest, host, clusters);
    };
    const end = first + count;
    for (let g = first; g < end;) {
      const index = Math.floor(g / this.l2Entries);
      const base = index * this.l2Entries;
      const stop = Math.min(end, base + this.l2Entries) - base; // within this table
      let runs = this.l2Runs.get(index);
      if (!runs) {
        runs = new TableRuns();
        this.l2Runs.set(index, runs);
      }
      let at = g - base;
      let i = runs.firstEndingAfter(at);
      while (at < stop) {
        if (i < runs.count && runs.guest(i) <= at) {
          // Written before: in place.
          const n = Math.min(stop, runs.guest(i) + runs.clusters(i)) - at;
          add(base + at, runs.host(i) + (at - runs.guest(i)), n);
          at += n;
          i++;
        } else {
          const n = (i < runs.count ? Math.min(stop, runs.guest(i)) : stop) - at;
          add(base + at, this.nextCluster, n);
          i = runs.insert(i, at, this.nextCluster, n);
          this.nextCluster += n;
          at += n;
        }
      }
      g = base + stop;
    }
    return out;
  }

  /** `bytes` at file offset `position` (cluster-aligned), directly when the memory allows it. */
  private async writeAt(position: number, bytes: Buffer): Promise<void> {
    const padded = alignUp(bytes.length);
    // The padding up to the next 4 KiB falls inside the cluster, which holds nothing else.
    const view = this.direct ? alignedView(bytes, bytes.length) : null;
    if (view) view.fill(0, bytes.length, padded);
    const out = view ?? bytes;
    const fh = view ? this.direct! : this.handle;
    try {
      let at = 0;
      while (at < out.length) {
        const { bytesWritten } = await fh.write(out, at, out.length - at, position + at);
        if (bytesWritten <= 0 || (view && bytesWritten % DIRECT_IO_ALIGN !== 0)) {
          throw hvError('copy_failed', `write of ${this.file}: ${bytesWritten} bytes at ${position + at}`);
        }
        at += bytesWritten;
      }
    } catch (e) {
      throw writeError(e, this.file);
    }
  }

  /**
   * After the data clusters: the L2 tables, the L1 table, the refcount blocks and the refcount table,
   * every cluster of the file with refcount 1; then the header that points at them.
   */
  private async writeTables(): Promise<void> {
    const c = this.clusterBytes;
    const l1Size = Math.ceil(this.virtualSizeBytes / (c * this.l2Entries));
    const l2Indices = [...this.l2Runs.keys()].sort((a, b) => a - b);
    const l2Start = this.nextCluster;
    const l1Start = l2Start + l2Indices.length;
    const l1Clusters = Math.ceil((l1Size * 8) / c);
    const refcountStart = l1Start + l1Clusters;
    const perBlock = (c * 8) / 2 ** REFCOUNT_ORDER;
    // The refcount blocks count themselves and the table that lists them: grow both until they fit.
    let blocks = 0;
    let tableClusters = 0;
    for (;;) {
      const total = refcountStart + blocks + tableClusters;
      const needBlocks = Math.ceil(total / perBlock);
      const needTable = Math.ceil((needBlocks * 8) / c);
      if (needBlocks === blocks && needTable === tableClusters) break;
      [blocks, tableClusters] = [needBlocks, needTable];
    }
    const tableStart = refcountStart + blocks;
    const totalClusters = tableStart + tableClusters;

    const cluster = Buffer.alloc(c);
    const l1 = Buffer.alloc(l1Clusters * c);
    for (const [n, index] of l2Indices.entries()) {
      const runs = this.l2Runs.get(index)!;
      cluster.fill(0);
      for (let r = 0; r < runs.count; r++) {
        const [guest, host] = [runs.guest(r), runs.host(r)];
        for (let i = 0; i < runs.clusters(r); i++) {
          cluster.writeBigUInt64BE(BigInt((host + i) * c) | COPIED, (guest + i) * 8);
        }
      }
      await this.writeMeta(cluster, (l2Start + n) * c);
      l1.writeBigUInt64BE(BigInt((l2Start + n) * c) | COPIED, index * 8);
    }
    await this.writeMeta(l1, l1Start * c);
    const refTable = Buffer.alloc(tableClusters * c);
    for (let b = 0; b < blocks; b++) {
      cluster.fill(0);
      const counted = Math.min(perBlock, totalClusters - b * perBlock);
      for (let i = 0; i < counted; i++) cluster.writeUInt16BE(1, i * 2);
      await this.writeMeta(cluster, (refcountStart + b) * c);
      refTable.writeBigUInt64BE(BigInt((refcountStart + b) * c), b * 8);
    }
    await this.writeMeta(refTable, tableStart * c);

    const header = Buffer.alloc(c);
    const H = QCOW2_HEADER;
    header.writeUInt32BE(QCOW2_MAGIC, H.magic);
    header.writeUInt32BE(VERSION, H.version);
    // No backing file, no encryption, no snapshots, no features: those fields stay zero.
    header.writeUInt32BE(this.clusterBits, H.clusterBits);
    header.writeBigUInt64BE(BigInt(this.virtualSizeBytes), H.size);
    header.writeUInt32BE(l1Size, H.l1Size);
    header.writeBigUInt64BE(BigInt(l1Start * c), H.l1TableOffset);
    header.writeBigUInt64BE(BigInt(tableStart * c), H.refcountTableOffset);
    header.writeUInt32BE(tableClusters, H.refcountTableClusters);
    header.writeUInt32BE(REFCOUNT_ORDER, H.refcountOrder);
    header.writeUInt32BE(H.v3Bytes, H.headerLength);
    // Then the header extensions: only the end marker (type 0, length 0), already zeros.
    await this.writeMeta(header, 0);
  }

  private async writeMeta(bytes: Buffer, position: number): Promise<void> {
    try {
      let at = 0;
      while (at < bytes.length) {
        const { bytesWritten } = await this.handle.write(bytes, at, bytes.length - at, position + at);
        at += bytesWritten;
      }
    } catch (e) {
      throw writeError(e, this.file);
    }
  }

  private async close(): Promise<void> {
    if (this.fileClosed) return;
    this.fileClosed = true;
    await Promise.all([this.handle.close(), this.direct?.close()]);
  }
}

/**
 * The guest clusters of one L2 table that were written, as runs sorted by guest cluster and not
 * overlapping: [first guest cluster (counted from the table's first), first host cluster, clusters].
 * A run that continues the one before it in both guest and host clusters extends it instead.
 */
class TableRuns {
  /** Three entries a run; grown by doubling. */
  private entries = new Uint32Array(3 * 2);
  count = 0;

  guest(i: number): number {
    return this.entries[3 * i];
  }

  host(i: number): number {
    return this.entries[3 * i + 1];
  }

  clusters(i: number): number {
    return this.entries[3 * i + 2];
  }

  /** The first run that ends after guest cluster `g` (`count`: none). */
  firstEndingAfter(g: number): number {
    let [lo, hi] = [0, this.count];
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.guest(mid) + this.clusters(mid) <= g) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Adds a run before run `i`, in a gap in front of it; returns the index of the run that was `i`.
   * Its host clusters are the newest, so it can continue only the run before it.
   */
  insert(i: number, guest: number, host: number, clusters: number): number {
    const prev = i - 1;
    if (
      prev >= 0 &&
      this.guest(prev) + this.clusters(prev) === guest &&
      this.host(prev) + this.clusters(prev) === host
    ) {
      this.entries[3 * prev + 2] += clusters;
      return i;
    }
    if (3 * (this.count + 1) > this.entries.length) {
      const grown = new Uint32Array(this.entries.length * 2);
      grown.set(this.entries);
      this.entries = grown;
    }
    this.entries.copyWithin(3 * (i + 1), 3 * i, 3 * this.count);
    this.entries.set([guest, host, clusters], 3 * i);
    this.count++;
    return i + 1;
  }
}

function writeError(e: unknown, file: string): Error {
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'ENOSPC') return hvError('insufficient_storage', `write of ${file}: ${err.message}`);
  if (err.code) return hvError('copy_failed', `write of ${file}: ${err.message}`);
  return e as Error;
}
