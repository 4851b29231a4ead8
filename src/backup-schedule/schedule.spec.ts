import {
  decideSlot,
  Schedule,
  slotAtOrAfter,
  slotAtOrBefore,
  WINDOW_MS,
  windowEndOf,
  windowOffsetMs,
} from './schedule';

const daily: Schedule = { frequency: 'daily', weekday: null, hour: 2 };
const weekly: Schedule = { frequency: 'weekly', weekday: 3, hour: 22 }; // Wednesdays 22:00-02:00
const t = (s: string) => new Date(s);

describe('backup schedule slots', () => {
  it('offsets are stable, inside the window, and spread a node of servers over it', () => {
    const offsets = Array.from({ length: 200 }, (_, i) => windowOffsetMs(i + 1));
    expect(windowOffsetMs(17)).toBe(windowOffsetMs(17));
    for (const o of offsets) {
      expect(o).toBeGreaterThanOrEqual(0);
      expect(o).toBeLessThan(WINDOW_MS);
    }
    // Each of the window's 4 hours gets between a sixth and a third of the servers.
    for (let h = 0; h < 4; h++) {
      const n = offsets.filter((o) => Math.floor(o / 3_600_000) === h).length;
      expect(n).toBeGreaterThan(200 / 6);
      expect(n).toBeLessThan(200 / 3);
    }
  });

  it('daily slots: window start + offset, one a day', () => {
    const off = windowOffsetMs(5);
    const slot = slotAtOrBefore(daily, 5, t('2026-03-10T12:00:00Z'));
    expect(slot.getTime()).toBe(t('2026-03-10T02:00:00Z').getTime() + off);
    const early = slotAtOrBefore(daily, 5, t('2026-03-10T01:00:00Z'));
    expect(early.getTime()).toBe(t('2026-03-09T02:00:00Z').getTime() + off);
    expect(slotAtOrAfter(daily, 5, t('2026-03-10T01:00:00Z')).getTime()).toBe(slot.getTime());
    expect(windowEndOf(5, slot)).toEqual(t('2026-03-10T06:00:00Z'));
  });

  it('weekly slots fall on the weekday (UTC), also when the window crosses midnight', () => {
    const slot = slotAtOrBefore(weekly, 9, t('2026-03-14T00:00:00Z')); // a Saturday
    expect(new Date(slot.getTime() - windowOffsetMs(9))).toEqual(t('2026-03-11T22:00:00Z')); // Wednesday
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
});
