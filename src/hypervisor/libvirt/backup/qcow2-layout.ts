import { promises as fsp } from 'node:fs';

import { hvError } from '../../driver-errors';
import { DiskExtent } from '../../hypervisor-driver';
import { MapEntry } from '../tools/qemu-img';
import {
  align8,
  QCOW2_AUTOCLEAR_BITMAPS,
  QCOW2_BITMAP_ENTRY,
  QCOW2_ENTRY,
  QCOW2_EXTENSION,
  QCOW2_HEADER,
  QCOW2_INCOMPATIBLE,
  QCOW2_MAGIC,
} from './qcow2-format';

/**
 * What a backup read of a shut-off qcow2 needs, read from the image file itself: where each guest
 * cluster's data lies (the L1 and L2 tables), and which clusters one persistent bitmap marks dirty.
 * `qemu-img map` gives the first and, over an NBD export of the bitmap, the second; each is a process
 * and a pass over the same tables, on the read's critical path. The caller holds the image lock
 * (nothing writes the file while it is read).
 *
 * Only a plain image is read: no backing file, no encryption, no external data file, no extended L2
 * entries, no compressed clusters — anything else is refused (`hypervisor_error`), as its data is not
 * where a read of this file would find it.
 */
export interface Qcow2Layout {
  readonly virtualSize: number;
  /** The data clusters as ranges (guest and file both contiguous), in guest order; depth 0. */
  readonly data: MapEntry[];
  /** The ranges the asked bitmap marks dirty, in order; null when no bitmap was asked. */
  readonly dirty: DiskExtent[] | null;
}

/** L2 tables read at once. */
const L2_TABLES_IN_FLIGHT = 8;
/**
 * The largest tables read whole: qemu's own limits (an L1 table of 32 MiB, a bitmap directory of
 * 65535 entries of at most ~1 KiB) bound what a damaged header can make this process allocate.
 */
const MAX_L1_TABLE_BYTES = 32 * 1024 * 1024;
const MAX_BITMAP_DIRECTORY_BYTES = 64 * 1024 * 1024;
/** A bitmap table: 8 bytes per cluster of bits (a 64 TiB disk at 64 KiB granularity needs 16 KiB). */
const MAX_BITMAP_TABLE_BYTES = 64 * 1024 * 1024;

export async function readQcow2Layout(
  fh: fsp.FileHandle,
  file: string,
  bitmap: string | null,
): Promise<Qcow2Layout> {
  const refuse = (why: string) => hvError('hypervisor_error', `${file}: ${why}; it cannot be read in place`);
  const readAt = async (position: number, length: number): Promise<Buffer> => {
    const buf = Buffer.allocUnsafe(length);
    const { bytesRead } = await fh.read(buf, 0, length, position);
    if (bytesRead !== length) throw refuse(`${length} bytes at ${position} are past the end of the file`);
    return buf;
  };

  const H = QCOW2_HEADER;
  const head = await readAt(0, H.v3Bytes);
  if (head.readUInt32BE(H.magic) !== QCOW2_MAGIC) throw refuse('not a qcow2 image');
  const version = head.readUInt32BE(H.version);
  if (version !== 2 && version !== 3) throw refuse(`qcow2 version ${version}`);
  const clusterBits = head.readUInt32BE(H.clusterBits);
  if (clusterBits < 9 || clusterBits > 21) throw refuse(`cluster bits ${clusterBits}`);
  const cluster = 2 ** clusterBits;
  const virtualSize = Number(head.readBigUInt64BE(H.size));
  if (head.readBigUInt64BE(H.backingFileOffset) !== 0n) throw refuse('it has a backing file');
  if (head.readUInt32BE(H.cryptMethod) !== 0) throw refuse('it is encrypted');
  const incompatible = version === 3 ? head.readBigUInt64BE(H.incompatibleFeatures) : 0n;
  const understood = QCOW2_INCOMPATIBLE.dirty | QCOW2_INCOMPATIBLE.compressionType;
  if (incompatible & ~understood) throw refuse(`incompatible features 0x${incompatible.toString(16)}`);
  const autoclear = version === 3 ? head.readBigUInt64BE(H.autoclearFeatures) : 0n;
  const headerLength = version === 3 ? head.readUInt32BE(H.headerLength) : H.v2Bytes;

  const l2Entries = cluster / 8;
  const l1Size = head.readUInt32BE(H.l1Size);
  if (l1Size < Math.ceil(virtualSize / (cluster * l2Entries)) || l1Size * 8 > MAX_L1_TABLE_BYTES) {
    throw refuse(`an L1 table of ${l1Size} entries for ${virtualSize} bytes`);
  }
  const l1 = await readAt(Number(head.readBigUInt64BE(H.l1TableOffset)), l1Size * 8);

  const data: MapEntry[] = [];
  const addData = (guest: number, host: number) => {
    const length = Math.min(cluster, virtualSize - guest);
    const last = data.at(-1);
    if (last && last.start + last.length === guest && (last.offset as number) + last.length === host) {
      data[data.length - 1] = { ...last, length: last.length + length };
    } else {
      data.push({ start: guest, length, depth: 0, present: true, zero: false, data: true, offset: host });
    }
  };
  const tables: { index: number; offset: number }[] = [];
  for (let i = 0; i * l2Entries * cluster < virtualSize; i++) {
    const offset = tableOffset(l1, i * 8);
    if (offset !== 0) tables.push({ index: i, offset });
  }
  for (let from = 0; from < tables.length; from += L2_TABLES_IN_FLIGHT) {
    const window = tables.slice(from, from + L2_TABLES_IN_FLIGHT);
    const read = await Promise.all(window.map((t) => readAt(t.offset, cluster)));
    window.forEach(({ index }, w) => {
      const l2 = read[w];
      for (let j = 0; j < l2Entries; j++) {
        const guest = (index * l2Entries + j) * cluster;
        if (guest >= virtualSize) break;
        const high = l2.readUInt32BE(j * 8);
        const low = l2.readUInt32BE(j * 8 + 4);
        if (high === 0 && low === 0) continue; // unallocated: zeros (no backing file)
        if (high & QCOW2_ENTRY.highCompressed) throw refuse(`a compressed cluster at ${guest}`);
        if (low & QCOW2_ENTRY.lowFlag0) continue; // reads as zeros
        const host = entryOffset(high, low);
        if (host === 0) continue;
        if (host % cluster !== 0) throw refuse(`an L2 entry not on a cluster at ${guest}`);
        addData(guest, host);
      }
    });
  }

  const dirty =
    bitmap === null
      ? null
      : await dirtyRanges(
          bitmap,
          await readAt(0, Math.min(cluster, (await fh.stat()).size)),
          headerLength,
          (autoclear & QCOW2_AUTOCLEAR_BITMAPS) !== 0n,
          { cluster, virtualSize, readAt, refuse },
        );
  return { virtualSize, data, dirty };
}

/** The cluster offset of the u64 table entry at `at` (0: none). */
function tableOffset(table: Buffer, at: number): number {
  return entryOffset(table.readUInt32BE(at), table.readUInt32BE(at + 4));
}

function entryOffset(high: number, low: number): number {
  return (high & QCOW2_ENTRY.highOffsetMask) * 2 ** 32 + ((low & QCOW2_ENTRY.lowOffsetMask) >>> 0);
}

interface ImageReader {
  readonly cluster: number;
  readonly virtualSize: number;
  readonly readAt: (position: number, length: number) => Promise<Buffer>;
  readonly refuse: (why: string) => Error;
}

/**
 * The dirty ranges of persistent bitmap `name`: its directory entry found through the header's
 * bitmaps extension in cluster 0 (`first`), its table read, every set bit a granule of the disk. A
 * bitmap that is missing, left in use by a qemu that never closed the image, disabled, or not kept up
 * to date (the autoclear bit) cannot say what changed: refused, like the export of such a bitmap.
 */
async function dirtyRanges(
  name: string,
  first: Buffer,
  headerLength: number,
  bitmapsKept: boolean,
  img: ImageReader,
): Promise<DiskExtent[]> {
  const { readAt, refuse } = img;
  let directory: { offset: number; bytes: number } | null = null;
  for (let at = headerLength; at + 8 <= first.length;) {
    const type = first.readUInt32BE(at);
    const length = first.readUInt32BE(at + 4);
    if (type === QCOW2_EXTENSION.end) break;
    // Bitmaps: nb_bitmaps u32, reserved u32, directory size u64, directory offset u64.
    if (type === QCOW2_EXTENSION.bitmaps && at + 32 <= first.length) {
      directory = {
        bytes: Number(first.readBigUInt64BE(at + 16)),
        offset: Number(first.readBigUInt64BE(at + 24)),
      };
    }
    at += 8 + align8(length);
  }
  if (!directory || !bitmapsKept) throw refuse(`no consistent bitmap ${name}`);
  if (directory.bytes > MAX_BITMAP_DIRECTORY_BYTES)
    throw refuse(`a bitmap directory of ${directory.bytes} bytes`);
  const dir = await readAt(directory.offset, directory.bytes);
  const E = QCOW2_BITMAP_ENTRY;
  for (let at = 0; at + E.fixedBytes <= dir.length;) {
    const nameSize = dir.readUInt16BE(at + E.nameSize);
    const extra = dir.readUInt32BE(at + E.extraDataSize);
    const entryName = dir.toString('utf8', at + E.fixedBytes + extra, at + E.fixedBytes + extra + nameSize);
    if (entryName === name) {
      const flags = dir.readUInt32BE(at + E.flags);
      if (flags & E.flagInUse || !(flags & E.flagAuto)) throw refuse(`bitmap ${name} is not consistent`);
      if (dir.readUInt8(at + E.type) !== E.typeDirtyTracking)
        throw refuse(`bitmap ${name} has an unknown type`);
      const granularity = 2 ** dir.readUInt8(at + E.granularityBits);
      const table = {
        offset: tableOffset(dir, at + E.tableOffset),
        size: dir.readUInt32BE(at + E.tableSize),
      };
      return bitmapRanges(table, granularity, img);
    }
    at += align8(E.fixedBytes + extra + nameSize);
  }
  throw refuse(`no consistent bitmap ${name}`);
}

/**
 * The ranges a bitmap table marks: each table entry is one cluster of bits (bit k of byte i is granule
 * 8i + k); an entry without a cluster is all zeros, or all ones when its flag bit is set.
 */
async function bitmapRanges(
  table: { offset: number; size: number },
  granularity: number,
  { cluster, virtualSize, readAt, refuse }: ImageReader,
): Promise<DiskExtent[]> {
  const bitsPerCluster = cluster * 8;
  const granules = Math.ceil(virtualSize / granularity);
  if (table.size !== Math.ceil(granules / bitsPerCluster) || table.size * 8 > MAX_BITMAP_TABLE_BYTES) {
    throw refuse(`a bitmap table of ${table.size}`);
  }
  const entries = table.size ? await readAt(table.offset, table.size * 8) : Buffer.alloc(0);
  const out: DiskExtent[] = [];
  const mark = (granule: number, count: number) => {
    const offset = granule * granularity;
    const length = Math.min(count * granularity, virtualSize - offset);
    const last = out.at(-1);
    if (last && last.offset + last.length === offset) {
      out[out.length - 1] = { offset: last.offset, length: last.length + length };
    } else out.push({ offset, length });
  };
  for (let t = 0; t < table.size; t++) {
    const first = t * bitsPerCluster;
    const count = Math.min(bitsPerCluster, granules - first);
    const high = entries.readUInt32BE(t * 8);
    const low = entries.readUInt32BE(t * 8 + 4);
    const at = entryOffset(high, low);
    if (at === 0) {
      if (low & QCOW2_ENTRY.lowFlag0) mark(first, count);
      continue;
    }
    const bits = await readAt(at, cluster);
    for (let byte = 0; byte * 8 < count; byte++) {
      const v = bits[byte];
      if (v === 0) continue;
      for (let k = 0; k < 8 && byte * 8 + k < count; k++) if (v & (1 << k)) mark(first + byte * 8 + k, 1);
    }
  }
  return out;
}
