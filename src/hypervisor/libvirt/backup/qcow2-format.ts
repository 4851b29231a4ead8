/*
 * The parts of the qcow2 format (https://gitlab.com/qemu-project/qemu/-/blob/master/docs/interop/qcow2.txt)
 * this driver reads (qcow2-layout.ts) and writes (qcow2-image-writer.ts) itself. All numbers in an
 * image are big-endian.
 */

/** "QFI\xfb" */
export const QCOW2_MAGIC = 0x514649fb;

/** Byte offsets of the header's fields (version 2 ends before `incompatibleFeatures`). */
export const QCOW2_HEADER = {
  magic: 0,
  version: 4,
  backingFileOffset: 8,
  clusterBits: 20,
  size: 24,
  cryptMethod: 32,
  l1Size: 36,
  l1TableOffset: 40,
  refcountTableOffset: 48,
  refcountTableClusters: 56,
  incompatibleFeatures: 72,
  autoclearFeatures: 88,
  refcountOrder: 96,
  headerLength: 100,
  /** A version 2 header's length; header extensions follow the header. */
  v2Bytes: 72,
  /** A version 3 header without the optional compression type. */
  v3Bytes: 104,
} as const;

/** Incompatible feature bits. */
export const QCOW2_INCOMPATIBLE = {
  /** Refcounts may be stale (lazy refcounts): the tables that map data are still right. */
  dirty: 1n << 0n,
  corrupt: 1n << 1n,
  externalDataFile: 1n << 2n,
  /** Only compressed clusters use it. */
  compressionType: 1n << 3n,
  extendedL2: 1n << 4n,
} as const;

/** Autoclear bit: the bitmaps extension was kept up to date by the last writer. */
export const QCOW2_AUTOCLEAR_BITMAPS = 1n << 0n;

/** Header extension types (each: type u32, length u32, data padded to 8 bytes; type 0 ends them). */
export const QCOW2_EXTENSION = { end: 0, bitmaps: 0x23852875 } as const;

/**
 * L1 / L2 / refcount-table and bitmap-table entries (u64): the cluster offset is bits 9–55. As two
 * u32 halves (JavaScript numbers hold 53 bits): the high half's bits 0–23, the low half's 9–31.
 */
export const QCOW2_ENTRY = {
  highOffsetMask: 0x00ffffff,
  lowOffsetMask: 0xfffffe00,
  /** High half: an L2 entry of a compressed cluster. */
  highCompressed: 0x40000000,
  /** Low half: an L2 entry that reads as zeros; a bitmap-table entry without a cluster: all ones. */
  lowFlag0: 0x1,
  /** Table entries whose cluster has refcount 1 (bit 63). */
  copied: 1n << 63n,
} as const;

/** A bitmap directory entry's fixed part, and its flags. */
export const QCOW2_BITMAP_ENTRY = {
  tableOffset: 0,
  tableSize: 8,
  flags: 12,
  type: 16,
  granularityBits: 17,
  nameSize: 18,
  extraDataSize: 20,
  fixedBytes: 24,
  flagInUse: 1 << 0,
  flagAuto: 1 << 1,
  /** The only type: a dirty tracking bitmap. */
  typeDirtyTracking: 1,
} as const;

/** `n` rounded up to a multiple of 8 (extensions and directory entries are 8-byte aligned). */
export function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}
