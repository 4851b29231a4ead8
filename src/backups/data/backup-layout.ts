import { DiskExtent } from '../../hypervisor/hypervisor-driver';

/**
 * How a disk is cut into chunks and where chunks and manifests live in a store. Chunk i covers
 * [i·CHUNK_SIZE, (i+1)·CHUNK_SIZE) of the virtual disk; the last one may be short. 4 MiB is a multiple
 * of qcow2's 64 KiB clusters, the granularity of dirty bitmaps, so a changed cluster dirties one chunk.
 */
export const CHUNK_SIZE_BYTES = 4 * 1024 * 1024;

export function chunkCount(virtualSizeBytes: number): number {
  return Math.ceil(virtualSizeBytes / CHUNK_SIZE_BYTES);
}

export function chunkOffset(index: number): number {
  return index * CHUNK_SIZE_BYTES;
}

export function chunkLength(index: number, virtualSizeBytes: number): number {
  return Math.min(CHUNK_SIZE_BYTES, virtualSizeBytes - chunkOffset(index));
}

/**
 * The indices of the chunks `extents` touch, ascending, each once. Extents are sorted and do not
 * overlap (the driver's promise); parts beyond the disk are ignored. Linear in extents + result.
 */
export function touchedChunks(extents: readonly DiskExtent[], virtualSizeBytes: number): number[] {
  const out: number[] = [];
  for (const { offset, length } of extents) {
    const end = Math.min(offset + length, virtualSizeBytes);
    if (length <= 0 || offset >= end) continue;
    const last = Math.floor((end - 1) / CHUNK_SIZE_BYTES);
    let i = Math.max(Math.floor(offset / CHUNK_SIZE_BYTES), out.length ? out[out.length - 1] + 1 : 0);
    for (; i <= last; i++) out.push(i);
  }
  return out;
}

/**
 * The parts of `extents` inside each chunk they touch (clipped to the chunk and to the disk), by chunk
 * index, in order. Same promises and cost as {@link touchedChunks}.
 */
export function extentsByChunk(
  extents: readonly DiskExtent[],
  virtualSizeBytes: number,
): Map<number, DiskExtent[]> {
  const out = new Map<number, DiskExtent[]>();
  for (const { offset, length } of extents) {
    const end = Math.min(offset + length, virtualSizeBytes);
    for (let at = offset; at < end;) {
      const i = Math.floor(at / CHUNK_SIZE_BYTES);
      const until = Math.min(end, chunkOffset(i) + chunkLength(i, virtualSizeBytes));
      let parts = out.get(i);
      if (!parts) out.set(i, (parts = []));
      parts.push({ offset: at, length: until - at });
      at = until;
    }
  }
  return out;
}

/** Everything of an account in a store lives under this prefix. */
export function accountPrefix(accountId: number): string {
  return `accounts/${accountId}/`;
}

export function chunkKey(accountId: number, chunkId: string): string {
  return `${accountPrefix(accountId)}chunks/${chunkId.slice(0, 2)}/${chunkId}`;
}

/** A chunk's id: the sha256 of its plaintext, in lower-case hex. */
export const CHUNK_ID = /^[0-9a-f]{64}$/;

/** The account and chunk a store key names when it is a chunk's key (`chunkKey`), else null. */
export function parseChunkKey(key: string): { accountId: number; chunkId: string } | null {
  const parts = key.split('/');
  const chunkId = parts[parts.length - 1];
  const accountId = /^\d{1,10}$/.test(parts[1] ?? '') ? Number(parts[1]) : NaN;
  if (!CHUNK_ID.test(chunkId) || !Number.isSafeInteger(accountId)) return null;
  return chunkKey(accountId, chunkId) === key ? { accountId, chunkId } : null;
}

export function manifestKey(accountId: number, backupId: number): string {
  return `${accountPrefix(accountId)}manifests/${backupId}`;
}

/** A copy of the account's data key (wrapped by the master key) with that id (hex), beside its chunks. */
export function accountKeyKey(accountId: number, keyIdHex: string): string {
  return `${accountPrefix(accountId)}keys/${keyIdHex}`;
}
