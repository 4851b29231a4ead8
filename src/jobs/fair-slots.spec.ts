import { FairSlots } from './fair-slots';

/** Enters and records the order in which grants arrive. */
function recorder(slots: FairSlots) {
  const order: string[] = [];
  const releases = new Map<string, () => void>();
  const enter = (account: number, label: string, signal?: AbortSignal) => {
    const p = slots.tryEnter(account, signal);
    if (!p) return null;
    return p.then((release) => {
      order.push(label);
      releases.set(label, release);
    });
  };
  const release = (label: string) => releases.get(label)!();
  return { order, enter, release };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('FairSlots', () => {
  it('rejects bad sizes', () => {
    expect(() => new FairSlots(0, 1)).toThrow('capacity');
    expect(() => new FairSlots(2, 1.5)).toThrow('perAccount');
  });

  it('never runs more than perAccount of one account, even with free slots', async () => {
    const slots = new FairSlots(4, 2);
    const r = recorder(slots);
    void r.enter(1, 'a1');
    void r.enter(1, 'a2');
    void r.enter(1, 'a3');
    await tick();
    expect(r.order).toEqual(['a1', 'a2']);
    expect(slots.running(1)).toBe(2);
    expect(slots.inUse).toBe(2);
    r.release('a1');
    await tick();
    expect(r.order).toEqual(['a1', 'a2', 'a3']);
  });

  it("gives a freed slot to the quiet account before the flooding account's next job", async () => {
    const slots = new FairSlots(2, 2);
    const r = recorder(slots);
    void r.enter(1, 'a1');
    void r.enter(1, 'a2');
    await tick();
    void r.enter(1, 'a3'); // waits: node full
    void r.enter(2, 'b1'); // arrives later, waits too
    await tick();
    r.release('a1');
    await tick();
    expect(r.order).toEqual(['a1', 'a2', 'b1']);
    r.release('a2');
    await tick();
    expect(r.order).toEqual(['a1', 'a2', 'b1', 'a3']);
  });

  it('takes turns between accounts with the same number running (round-robin)', async () => {
    const slots = new FairSlots(1, 1);
    const r = recorder(slots);
    void r.enter(1, 'a1');
    await tick();
    void r.enter(1, 'a2');
    void r.enter(2, 'b1');
    void r.enter(3, 'c1');
    await tick();
    for (const label of ['a1', 'b1', 'c1']) {
      r.release(label);
      await tick();
    }
    expect(r.order).toEqual(['a1', 'b1', 'c1', 'a2']);
  });

  it('holds at most twice the share of one account; a release makes room and says so', async () => {
    const room: number[] = [];
    const slots = new FairSlots(4, 1, (a) => room.push(a));
    const r = recorder(slots);
    expect(r.enter(1, 'a1')).not.toBeNull();
    expect(r.enter(1, 'a2')).not.toBeNull();
    expect(r.enter(1, 'a3')).toBeNull();
    expect(r.enter(2, 'b1')).not.toBeNull(); // another account is not affected
    await tick();
    r.release('a1');
    await tick();
    expect(room).toEqual([1]);
    expect(r.order).toEqual(['a1', 'b1', 'a2']);
    expect(r.enter(1, 'a3')).not.toBeNull();
    // enter (the fallback when a job cannot go back to the queue) waits whatever the account holds.
    const beyond = slots.enter(1);
    r.release('a2');
    await tick();
    r.release('a3');
    await expect(beyond).resolves.toEqual(expect.any(Function));
  });

  it('an aborted waiter leaves without a slot; released twice counts once', async () => {
    const slots = new FairSlots(1, 1);
    const r = recorder(slots);
    void r.enter(1, 'a1');
    await tick();
    const stop = new AbortController();
    const waiting = slots.enter(2, stop.signal);
    stop.abort();
    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
    r.release('a1');
    r.release('a1');
    expect(slots.inUse).toBe(0);
    expect(slots.running(2)).toBe(0);
    await expect(slots.enter(3, stop.signal)).rejects.toMatchObject({ name: 'AbortError' });
  });
});
