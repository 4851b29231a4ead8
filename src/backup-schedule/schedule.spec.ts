import {
  decideSlot,
  Schedule,
  scheduleOf,
  slotAtOrAfter,
  slotAtOrBefore,
  WINDOW_MS,
  windowEndOf,
  windowOffsetMs,
} from './schedule';

const daily: Schedule = { frequency: 'daily', weekday: null, hour: 2, windowMs: WINDOW_MS };
const weekly: Schedule = { frequency: 'weekly', weekday: 3, hour: 22, windowMs: WINDOW_MS }; // Wednesdays 22:00-02:00
const t = (s: string) => new Date(s);

/** 200 servers' offsets: whole seconds inside the window, each quarter of it holding a sixth to a third. */
function expectSpreadOver(windowMs: number): void {
  const offsets = Array.from({ length: 200 }, (_, i) => windowOffsetMs(i + 1, windowMs));
  for (const o of offsets) {
    expect(o % 1000).toBe(0);
    expect(o).toBeGreaterThanOrEqual(0);
    expect(o).toBeLessThan(windowMs);
  }
  for (let q = 0; q < 4; q++) {
    const n = offsets.filter((o) => Math.floor(o / (windowMs / 4)) === q).length;
    expect(n).toBeGreaterThan(200 / 6);
    expect(n).toBeLessThan(200 / 3);
  }
}

describe('backup schedule slots', () => {
  it('offsets are stable, inside the window, and spread a node of servers over it', () => {
    expect(windowOffsetMs(17, WINDOW_MS)).toBe(windowOffsetMs(17, WINDOW_MS));
    expectSpreadOver(WINDOW_MS);
  });

  it('daily slots: window start + offset, one a day', () => {
    const off = windowOffsetMs(5, WINDOW_MS);
    const slot = slotAtOrBefore(daily, 5, t('2026-03-10T12:00:00Z'));
    expect(slot.getTime()).toBe(t('2026-03-10T02:00:00Z').getTime() + off);
    const early = slotAtOrBefore(daily, 5, t('2026-03-10T01:00:00Z'));
    expect(early.getTime()).toBe(t('2026-03-09T02:00:00Z').getTime() + off);
    expect(slotAtOrAfter(daily, 5, t('2026-03-10T01:00:00Z')).getTime()).toBe(slot.getTime());
    expect(windowEndOf(daily, 5, slot)).toEqual(t('2026-03-10T06:00:00Z'));
  });

  it('weekly slots fall on the weekday (UTC), also when the window crosses midnight', () => {
    const slot = slotAtOrBefore(weekly, 9, t('2026-03-14T00:00:00Z')); // a Saturday
    expect(new Date(slot.getTime() - windowOffsetMs(9, WINDOW_MS))).toEqual(t('2026-03-11T22:00:00Z')); // Wednesday
    expect(slotAtOrAfter(weekly, 9, t('2026-03-14T00:00:00Z')).getTime()).toBe(
      slot.getTime() + 7 * 86_400_000,
    );
  });

  it('decides: nothing before the schedule began, the due slot once, then the next day', () => {
    const since = t('2026-03-10T03:00:00Z');
    const firstOwed = slotAtOrAfter(daily, 1, since);
    const before = decideSlot(daily, 1, new Date(firstOwed.getTime() - 1), null, since);
    expect(before.due).toBeNull();
    expect(before.nextRunAt).toEqual(firstOwed);
    const at = decideSlot(daily, 1, new Date(firstOwed.getTime() + 60_000), null, since);
    expect(at).toEqual({ due: firstOwed, missed: 0, late: false, nextRunAt: firstOwed });
    const after = decideSlot(daily, 1, new Date(firstOwed.getTime() + 60_000), firstOwed, since);
    expect(after.due).toBeNull();
    expect(after.nextRunAt.getTime()).toBe(firstOwed.getTime() + 86_400_000);
  });

  it('after three missed slots: one run for the latest, late when its window has closed', () => {
    const since = t('2026-03-01T00:00:00Z');
    const last = slotAtOrBefore(daily, 3, t('2026-03-05T12:00:00Z'));
    const back = new Date(last.getTime() + 3 * 86_400_000 + WINDOW_MS); // past the third slot's window
    const d = decideSlot(daily, 3, back, last, since);
    expect(d.due).toEqual(new Date(last.getTime() + 3 * 86_400_000));
    expect(d.missed).toBe(2);
    expect(d.late).toBe(true);
  });

  describe('a short window (BACKUP_WINDOW_MINUTES) shrinks the schedule clock with it', () => {
    const minute = 60_000;
    const short = scheduleOf({ frequency: 'daily', weekday: null, hour: 2 }, 1);

    it('240 minutes is the contract: real UTC hours and days', () => {
      expect(scheduleOf({ frequency: 'daily', weekday: null, hour: 2 }, 240)).toEqual(daily);
    });

    it('offsets spread over the short window, in whole seconds', () => {
      expectSpreadOver(minute);
    });

    it('a 1-minute window: schedule hours of 15 s, a slot every 6 minutes, late after the minute', () => {
      const dayStart = t('2026-03-10T12:00:00Z'); // a multiple of 6 minutes since the epoch
      const slot = slotAtOrBefore(short, 5, new Date(dayStart.getTime() + 3 * minute));
      expect(slot.getTime()).toBe(dayStart.getTime() + 2 * 15_000 + windowOffsetMs(5, minute));
      expect(windowEndOf(short, 5, slot).getTime()).toBe(dayStart.getTime() + 30_000 + minute);
      expect(slotAtOrAfter(short, 5, new Date(slot.getTime() + 1)).getTime()).toBe(
        slot.getTime() + 6 * minute,
      );
      const since = new Date(slot.getTime() - 1000);
      expect(decideSlot(short, 5, new Date(slot.getTime() + 1000), null, since)).toEqual({
        due: slot,
        missed: 0,
        late: false,
        nextRunAt: slot,
      });
      const afterWindow = decideSlot(short, 5, new Date(slot.getTime() + minute), null, since);
      expect(afterWindow.late).toBe(true);
    });

    it('weekly on a short clock: every seventh schedule day, on the weekday counted from the epoch', () => {
      const w = scheduleOf({ frequency: 'weekly', weekday: 4, hour: 0 }, 1); // Thursdays: day 0 of 1970
      const slot = slotAtOrBefore(w, 1, t('2026-03-10T12:00:00Z'));
      const sinceEpoch = slot.getTime() - windowOffsetMs(1, minute);
      expect(sinceEpoch % (7 * 6 * minute)).toBe(0);
      expect(slotAtOrAfter(w, 1, new Date(slot.getTime() + 1)).getTime()).toBe(slot.getTime() + 42 * minute);
    });
  });
});
