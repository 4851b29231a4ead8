import { createHash, randomFillSync } from 'node:crypto';

import { pageAlignedBuffer } from './aligned-buffers';
import { sha256Hex } from './sha256-thread';

const MIB = 1024 * 1024;
const here = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('sha256 on its own thread', () => {
  it('hashes shared chunk buffers on the thread, many at once, each its own bytes', async () => {
    const buffers = Array.from({ length: 8 }, () => randomFillSync(pageAlignedBuffer(4 * MIB)));
    expect(buffers[0].buffer).toBeInstanceOf(SharedArrayBuffer);
    // Views that start and end inside the memory: the thread hashes exactly the view.
    const views = buffers.map((b, i) => b.subarray(4096 * i, 4 * MIB - 100 * i));
    // The event loop turns while they are hashed: on this thread, all would be done before it turned once.
    let turns = 0;
    let hashing = true;
    const turn = (): void => {
      if (!hashing) return;
      turns++;
      setImmediate(turn);
    };
    setImmediate(turn);
    const hexes = await Promise.all(views.map((v) => sha256Hex(v)));
    hashing = false;
    expect(hexes).toEqual(views.map(here));
    expect(turns).toBeGreaterThan(0);
  });

  it('hashes other buffers (and small ones) right here, with the same result', async () => {
    const plain = randomFillSync(Buffer.alloc(MIB));
    expect(await sha256Hex(plain)).toBe(here(plain));
    const small = pageAlignedBuffer(64 * 1024)
      .subarray(0, 1000)
      .fill(7);
    expect(await sha256Hex(small)).toBe(here(small));
    expect(await sha256Hex(Buffer.alloc(0))).toBe(here(Buffer.alloc(0)));
  });
});
