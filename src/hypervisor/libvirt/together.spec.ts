import { allInOrder, childController, together } from './together';

const later = <T>(ms: number, v: T): Promise<T> => new Promise((r) => setTimeout(() => r(v), ms));

/** A step that runs until its signal aborts, then rejects like an aborted child process would. */
function untilAborted(log: string[], name: string): (s: AbortSignal) => Promise<never> {
  return (s) =>
    new Promise((_resolve, reject) => {
      s.addEventListener('abort', () => {
        log.push(`${name} aborted`);
        setTimeout(() => reject(new Error(`${name}: aborted`)), 20);
      });
    });
}

describe('together', () => {
  it('resolves with every step result, in order, running the steps at once', async () => {
    let active = 0;
    let most = 0;
    const step =
      <T>(v: T) =>
      async (): Promise<T> => {
        most = Math.max(most, ++active);
        await later(20, null);
        active--;
        return v;
      };
    const r = await together(undefined, [step('a'), step(2), step(true)] as const);
    expect(r).toEqual(['a', 2, true]);
    expect(most).toBe(3);
  });

  it('a failing step aborts the others and its own error wins over theirs', async () => {
    const log: string[] = [];
    const boom = new Error('check failed');
    const e = await together(undefined, [
      untilAborted(log, 'hash'),
      async () => {
        await later(10, null);
        throw boom;
      },
      untilAborted(log, 'fsync'),
    ] as const).catch((x: unknown) => x);
    expect(e).toBe(boom);
    expect(log.sort()).toEqual(['fsync aborted', 'hash aborted']);
  });

  it('settles only when every step has settled, also after a failure', async () => {
    let slowDone = false;
    const e = await together(undefined, [
      () => Promise.reject(new Error('fast failure')),
      async () => {
        await later(80, null); // ignores its signal, like an fsync
        slowDone = true;
      },
    ] as const).catch((x: unknown) => x);
    expect((e as Error).message).toBe('fast failure');
    expect(slowDone).toBe(true);
  });

  it("the caller's abort reaches every step; an already aborted signal too", async () => {
    const log: string[] = [];
    const ac = new AbortController();
    const p = together(ac.signal, [untilAborted(log, 'a'), untilAborted(log, 'b')] as const);
    setTimeout(() => ac.abort(), 10);
    await expect(p).rejects.toThrow(/aborted/);
    expect(log.sort()).toEqual(['a aborted', 'b aborted']);

    const seen: boolean[] = [];
    await together(ac.signal, [async (s) => seen.push(s.aborted)] as const);
    expect(seen).toEqual([true]);
  });

  it('a step that throws synchronously is a failure like any other', async () => {
    const log: string[] = [];
    const e = await together(undefined, [
      untilAborted(log, 'other'),
      () => {
        throw new Error('sync');
      },
    ] as const).catch((x: unknown) => x);
    expect((e as Error).message).toBe('sync');
    expect(log).toEqual(['other aborted']);
  });
});

describe('childController', () => {
  it('follows its parent until disposed', () => {
    const parent = new AbortController();
    const a = childController(parent.signal);
    const b = childController(parent.signal);
    b.dispose();
    parent.abort();
    expect(a.controller.signal.aborted).toBe(true);
    expect(b.controller.signal.aborted).toBe(false);
    expect(childController(parent.signal).controller.signal.aborted).toBe(true);
    const own = childController(undefined);
    own.controller.abort();
    expect(own.controller.signal.aborted).toBe(true);
  });
});

describe('allInOrder', () => {
  it('resolves with the values in order', async () => {
    expect(await allInOrder([later(20, 1), Promise.resolve('b')] as const)).toEqual([1, 'b']);
  });

  it('rejects with the first error in array order, not the quickest, once all have settled', async () => {
    let lastDone = false;
    const e = await allInOrder([
      later(40, null).then(() => {
        throw new Error('domain not found');
      }),
      Promise.reject(new Error('quick failure')),
      later(60, null).then(() => {
        lastDone = true;
      }),
    ] as const).catch((x: unknown) => x);
    expect((e as Error).message).toBe('domain not found');
    expect(lastDone).toBe(true);
  });
});
