import {
  chunkCount,
  chunkKey,
  parseChunkKey,
  chunkLength,
  CHUNK_SIZE_BYTES,
  extentsByChunk,
  manifestKey,
  touchedChunks,
} from './backup-layout';

const CS = CHUNK_SIZE_BYTES;
const K64 = 64 * 1024;

describe('backup layout', () => {
  it('cuts a disk into 4 MiB chunks, the last one short', () => {
    expect(CS % K64).toBe(0);
    expect(chunkCount(0)).toBe(0);
    expect(chunkCount(CS)).toBe(1);
    expect(chunkCount(CS + 1)).toBe(2);
    expect(chunkLength(1, CS + 1)).toBe(1);
    expect(chunkLength(0, CS + 1)).toBe(CS);
  });

  it('lists each chunk an extent touches once, in order, and ignores what lies beyond the disk', () => {
    const size = 10 * CS;
    expect(
      touchedChunks(
        [
          { offset: 0, length: K64 },
          { offset: CS - K64, length: 2 * K64 }, // straddles chunks 0 and 1
          { offset: 3 * CS, length: 2 * CS }, // chunks 3 and 4 whole
          { offset: 5 * CS, length: 0 },
          { offset: 9 * CS + K64, length: 5 * CS }, // runs past the end
          { offset: 12 * CS, length: K64 }, // wholly past the end
        ],
        size,
      ),
    ).toEqual([0, 1, 3, 4, 9]);
    expect(touchedChunks([], size)).toEqual([]);
  });

  it('names objects per account, chunks fanned out by their first two hex digits', () => {
    const id = 'ab'.padEnd(64, '0');
    expect(chunkKey(7, id)).toBe(`accounts/7/chunks/ab/${id}`);
    expect(manifestKey(7, 42)).toBe('accounts/7/manifests/42');
  });

  it('reads a chunk key back, and nothing else as one', () => {
    const id = 'ab'.padEnd(64, '0');
    expect(parseChunkKey(chunkKey(7, id))).toEqual({ accountId: 7, chunkId: id });
    for (const key of [
      manifestKey(7, 42),
      `accounts/7/chunks/cd/${id}`, // the wrong fan-out directory
      `accounts/7/chunks/${id}`,
      `accounts/7/chunks/ab/${id.toUpperCase()}`,
      `accounts/7/chunks/ab/${id}0`,
      `accounts/x/chunks/ab/${id}`,
      `accounts/07/chunks/ab/${id}`,
      `other/accounts/7/chunks/ab/${id}`,
      `accounts/7/keys/ab/${id}`,
    ]) {
      expect(parseChunkKey(key)).toBeNull();
    }
  });

  it('splits extents at chunk boundaries, clipped to the disk', () => {
    const size = 3 * CS - K64;
    const byChunk = extentsByChunk(
      [
        { offset: 0, length: K64 },
        { offset: CS - K64, length: 2 * K64 }, // straddles chunks 0 and 1
        { offset: 2 * CS, length: CS }, // runs past the short last chunk
      ],
      size,
    );
    expect([...byChunk]).toEqual([
      [
        0,
        [
          { offset: 0, length: K64 },
          { offset: CS - K64, length: K64 },
        ],
      ],
      [1, [{ offset: CS, length: K64 }]],
      [2, [{ offset: 2 * CS, length: CS - K64 }]],
    ]);
  });
});
