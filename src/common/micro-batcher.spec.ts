import { MicroBatcher } from './micro-batcher';

const turn = () => new Promise((r) => setImmediate(r));

describe('MicroBatcher', () => {
  it('runs the calls of one turn as one batch, each call getting the value at its position', async () => {
    const batches: number[][] = [];
    const b = new MicroBatcher<number, string>(async (keys) => {
      batches.push(keys);
      return keys.map((k) => `v${k}`);
    });
    const out = await Promise.all([b.load(1), b.load(2), b.load(1)]);
    expect(out).toEqual(['v1', 'v2', 'v1']);
    expect(batches).toEqual([[1, 2, 1]]);
  });

  it('keeps at most maxInFlight batches running; calls made meanwhile form the next batch', async () => {
    const release: (() => void)[] = [];
    const batches: number[][] = [];
    const b = new MicroBatcher<number, number>(
      (keys) =>
        new Promise((resolve) => {
          batches.push(keys);
          release.push(() => resolve(keys));
        }),
      1,
    );
    const first = b.load(1);
    await turn();
    const rest = [b.load(2), b.load(3)];
    await turn();
    expect(batches).toEqual([[1]]); // the second batch waits for the first
    release[0]();
    await first;
    await turn(); // the finished batch frees its slot…
    await turn(); // …and the waiting calls go out on the next turn
    expect(batches).toEqual([[1], [2, 3]]);
    release[1]();
    expect(await Promise.all(rest)).toEqual([2, 3]);
  });

  it('rejects every call of a failed batch, and later batches still run', async () => {
    let fail = true;
    const b = new MicroBatcher<number, number>(async (keys) => {
      if (fail) throw new Error('down');
      return keys;
    });
    await expect(Promise.all([b.load(1), b.load(2)])).rejects.toThrow('down');
    fail = false;
    expect(await b.load(3)).toBe(3);
  });

  it('refuses an answer of the wrong length instead of handing out wrong values', async () => {
    const b = new MicroBatcher<number, number>(async () => [1]);
    await expect(Promise.all([b.load(1), b.load(2)])).rejects.toThrow('wrong number');
  });
});
