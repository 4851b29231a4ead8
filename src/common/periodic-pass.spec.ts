import { Logger } from '@nestjs/common';
import { PeriodicPass } from './periodic-pass';

describe('PeriodicPass', () => {
  const quiet = { warn: jest.fn() } as unknown as Logger;

  it('a call during a pass shares it; the next call runs a new one', async () => {
    let release!: () => void;
    let passes = 0;
    const p = new PeriodicPass(
      () => new Promise<number>((r) => ((release = () => r(++passes)), undefined)),
      quiet,
      'test pass',
    );
    const a = p.run();
    const b = p.run();
    release();
    expect(await Promise.all([a, b])).toEqual([1, 1]);
    const c = p.run();
    release();
    expect(await c).toBe(2);
  });

  it('stop() waits for the pass in flight, and a failed pass leaves the next free to run', async () => {
    let finished = false;
    const p = new PeriodicPass(
      () => new Promise<void>((r) => setTimeout(() => ((finished = true), r()), 50)),
      quiet,
      'test pass',
    );
    void p.run();
    await p.stop();
    expect(finished).toBe(true);

    let calls = 0;
    const failing = new PeriodicPass(
      () => (++calls === 1 ? Promise.reject(new Error('down')) : Promise.resolve(calls)),
      quiet,
      'test pass',
    );
    await expect(failing.run()).rejects.toThrow('down');
    expect(await failing.run()).toBe(2);
  });

  it('runs on its interval, logs a failure and keeps going; 0 never starts a timer', async () => {
    jest.useFakeTimers();
    try {
      const warn = jest.fn();
      let calls = 0;
      const p = new PeriodicPass(
        () => (++calls === 1 ? Promise.reject(new Error('down')) : Promise.resolve()),
        { warn } as unknown as Logger,
        'test pass',
      );
      p.start(1000);
      await jest.advanceTimersByTimeAsync(2500);
      expect(calls).toBe(2);
      expect(warn).toHaveBeenCalledWith(
        expect.objectContaining({ err: expect.any(Error) }),
        'test pass failed; will retry',
      );
      await p.stop();
      await jest.advanceTimersByTimeAsync(5000);
      expect(calls).toBe(2);

      const never = new PeriodicPass(() => Promise.resolve(++calls), quiet, 'test pass');
      never.start(0);
      await jest.advanceTimersByTimeAsync(5000);
      expect(calls).toBe(2);
    } finally {
      jest.useRealTimers();
    }
  });
});
