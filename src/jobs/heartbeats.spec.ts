import { Clock } from '../common/clock';
import { AppConfig } from '../config/app-config';
import { operationSignal } from './action-runner.service';
import { ActionStore } from './action-store';
import { Heartbeats } from './heartbeats';

describe('Heartbeats', () => {
  const at = new Date('2026-11-28T06:00:00.000Z');
  const config = { heartbeatIntervalMs: 1000 } as AppConfig;
  const clock = { now: () => at } as Clock;
  let calls: [number[], Date][];
  let store: ActionStore;
  let fail = false;

  beforeEach(() => {
    jest.useFakeTimers();
    calls = [];
    fail = false;
    store = {
      heartbeat: (ids: number[], when: Date) => {
        calls.push([ids, when]);
        return fail ? Promise.reject(new Error('connection refused')) : Promise.resolve();
      },
    } as unknown as ActionStore;
  });
  afterEach(() => jest.useRealTimers());

  it('stamps every running action in one statement per interval, and stops when none runs', async () => {
    const beats = new Heartbeats(store, config, clock);
    const stopA = beats.track(1);
    await jest.advanceTimersByTimeAsync(500);
    const stopB = beats.track(2);
    expect(calls).toEqual([]);
    await jest.advanceTimersByTimeAsync(500);
    expect(calls).toEqual([[[1, 2], at]]);
    stopA();
    stopA(); // twice is once
    await jest.advanceTimersByTimeAsync(1000);
    expect(calls).toEqual([
      [[1, 2], at],
      [[2], at],
    ]);
    stopB();
    expect(jest.getTimerCount()).toBe(0);
    await jest.advanceTimersByTimeAsync(5000);
    expect(calls).toHaveLength(2);
  });

  it('an action tracked twice (a retry overlapping) beats until both stop', async () => {
    const beats = new Heartbeats(store, config, clock);
    const first = beats.track(7);
    const second = beats.track(7);
    first();
    await jest.advanceTimersByTimeAsync(1000);
    expect(calls).toEqual([[[7], at]]);
    second();
    expect(jest.getTimerCount()).toBe(0);
  });

  it('a failing statement is swallowed and tried again at the next tick', async () => {
    const beats = new Heartbeats(store, config, clock);
    const stop = beats.track(3);
    fail = true;
    await jest.advanceTimersByTimeAsync(1000);
    fail = false;
    await jest.advanceTimersByTimeAsync(1000);
    expect(calls).toEqual([
      [[3], at],
      [[3], at],
    ]);
    stop();
  });
});

describe('operationSignal', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('aborts after the timeout with a TimeoutError', () => {
    const { signal, dispose } = operationSignal(undefined, 1000);
    jest.advanceTimersByTime(999);
    expect(signal.aborted).toBe(false);
    jest.advanceTimersByTime(1);
    expect(signal.aborted).toBe(true);
    expect((signal.reason as DOMException).name).toBe('TimeoutError');
    dispose();
  });

  it('follows the outer signal, also one aborted already', () => {
    const outer = new AbortController();
    const { signal, dispose } = operationSignal(outer.signal, 1000);
    outer.abort(new Error('shutting down'));
    expect(signal.aborted).toBe(true);
    expect((signal.reason as Error).message).toBe('shutting down');
    dispose();
    const late = operationSignal(outer.signal, 1000);
    expect(late.signal.aborted).toBe(true);
    late.dispose();
  });

  it('once disposed, neither the timer nor the outer signal aborts it', () => {
    const outer = new AbortController();
    const { signal, dispose } = operationSignal(outer.signal, 1000);
    dispose();
    expect(jest.getTimerCount()).toBe(0);
    outer.abort();
    jest.advanceTimersByTime(5000);
    expect(signal.aborted).toBe(false);
  });
});
