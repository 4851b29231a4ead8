import { randomBytes } from 'node:crypto';
import { KEY_ID_BYTES, open, seal, SEAL_OVERHEAD_BYTES, sealedKeyId, sealInPlace } from './sealed-box';

const key = () => ({ id: randomBytes(KEY_ID_BYTES), key: randomBytes(32) });

describe('sealed box (AES-256-GCM envelope)', () => {
  const k = key();
  const plain = Buffer.from('some backup data');

  it('opens what it sealed, with the same key and AAD, and names the key', () => {
    const sealed = seal(k, plain, 'chunk:1:x');
    expect(sealed.length).toBe(plain.length + SEAL_OVERHEAD_BYTES);
    expect(sealedKeyId(sealed)).toEqual(k.id);
    expect(open(k, sealed, 'chunk:1:x')).toEqual(plain);
  });

  it('seals and opens data of many pieces, into a buffer given for it when asked', () => {
    const big = randomBytes(5 * 64 * 1024 + 123);
    const sealed = seal(k, big, 'chunk:1:y');
    expect(open(k, sealed, 'chunk:1:y')!.equals(big)).toBe(true);
    const into = Buffer.alloc(big.length + SEAL_OVERHEAD_BYTES + 10, 7);
    const inPlace = seal(k, big, 'chunk:1:y', into);
    expect(inPlace.buffer).toBe(into.buffer);
    expect(inPlace.length).toBe(big.length + SEAL_OVERHEAD_BYTES);
    expect(open(k, inPlace, 'chunk:1:y')!.equals(big)).toBe(true);
    expect(into.subarray(inPlace.length).every((b) => b === 7)).toBe(true);
    expect(open(k, seal(k, Buffer.alloc(0), 'e'), 'e')!.length).toBe(0);
    expect(() => seal(k, big, 'chunk:1:y', Buffer.alloc(big.length))).toThrow(RangeError);
    const opened = Buffer.alloc(big.length + 10, 9);
    const openedInPlace = open(k, sealed, 'chunk:1:y', opened)!;
    expect(openedInPlace.buffer).toBe(opened.buffer);
    expect(openedInPlace.equals(big)).toBe(true);
    expect(opened.subarray(big.length).every((b) => b === 9)).toBe(true);
    expect(() => open(k, sealed, 'chunk:1:y', Buffer.alloc(big.length - 1))).toThrow(RangeError);
  });

  it("seals in place: the envelope replaces the plaintext from the buffer's start, for any length", () => {
    for (const length of [0, 1, 31, 32, 33, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 31, 3 * 64 * 1024 + 77]) {
      const data = randomBytes(length);
      const buffer = Buffer.alloc(length + SEAL_OVERHEAD_BYTES + 5, 7);
      data.copy(buffer);
      const sealed = sealInPlace(k, buffer, length, 'chunk:1:z');
      expect(sealed.buffer).toBe(buffer.buffer);
      expect(sealed.byteOffset).toBe(buffer.byteOffset);
      expect(sealed.length).toBe(length + SEAL_OVERHEAD_BYTES);
      expect(open(k, sealed, 'chunk:1:z')!.equals(data)).toBe(true);
      expect(buffer.subarray(sealed.length).every((b) => b === 7)).toBe(true);
    }
    expect(() => sealInPlace(k, Buffer.alloc(100), 100 - SEAL_OVERHEAD_BYTES + 1, 'a')).toThrow(RangeError);
  });

  it('uses a fresh nonce each time: equal plaintexts seal differently', () => {
    expect(seal(k, plain, 'a').equals(seal(k, plain, 'a'))).toBe(false);
  });

  it('refuses another AAD, another key, any flipped bit and anything not an envelope', () => {
    const sealed = seal(k, plain, 'chunk:1:x');
    expect(open(k, sealed, 'chunk:2:x')).toBeNull();
    expect(open({ ...key(), id: k.id }, sealed, 'chunk:1:x')).toBeNull();
    expect(open(key(), sealed, 'chunk:1:x')).toBeNull();
    for (let i = 0; i < sealed.length; i += 7) {
      const bad = Buffer.from(sealed);
      bad[i] ^= 0x10;
      expect(open(k, bad, 'chunk:1:x')).toBeNull();
    }
    expect(open(k, sealed.subarray(0, SEAL_OVERHEAD_BYTES - 1), 'chunk:1:x')).toBeNull();
    expect(open(k, Buffer.alloc(100), 'chunk:1:x')).toBeNull();
  });

  it("frees the cipher's output as it goes: sealing and opening 128 MiB leaves no dead pieces for the collector", () => {
    const chunk = randomBytes(4 * 1024 * 1024);
    const envelope = Buffer.alloc(chunk.length + SEAL_OVERHEAD_BYTES);
    const opened = Buffer.alloc(chunk.length);
    const before = process.memoryUsage().arrayBuffers;
    let grew = 0;
    for (let i = 0; i < 16; i++) {
      open(k, seal(k, chunk, 'c', envelope), 'c', opened);
      grew = Math.max(grew, process.memoryUsage().arrayBuffers - before);
    }
    // Without freeing, each chunk left 4 MiB sealed and 4 MiB opened for the garbage collector.
    expect(grew).toBeLessThan(8 * 1024 * 1024);
    expect(opened.equals(chunk)).toBe(true);
  });

  it('opens an envelope in place, the plaintext at the start of the memory it was read into', () => {
    for (const n of [0, 1, 31, 32, 33, 64 * 1024, 64 * 1024 + 1, 3 * 64 * 1024 + 77, 4 * 1024 * 1024]) {
      const p = randomBytes(n);
      const memory = Buffer.alloc(n + SEAL_OVERHEAD_BYTES + 64);
      const sealed = seal(k, p, 'c', memory);
      const opened = open(k, sealed, 'c', memory);
      expect(opened!.buffer).toBe(memory.buffer);
      expect(opened!.byteOffset).toBe(memory.byteOffset);
      expect(opened!.equals(p)).toBe(true);
    }
    const damaged = seal(k, randomBytes(1000), 'c');
    damaged[500] ^= 1;
    expect(open(k, damaged, 'c', damaged)).toBeNull();
  });
});
