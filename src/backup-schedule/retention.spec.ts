import { isoWeekKey, RetainedBackup, retainedIds, Retention } from './retention';

const DAY = 86_400_000;
const at = (date: string) => new Date(`${date}T02:30:00Z`);
const dateOf = (d: Date) => d.toISOString().slice(0, 10);

/**
 * One automatic backup a day from 2026-01-01 (a Thursday) for 400 days, retention applied after each
 * (as the scheduler does: pruned backups are gone for the next day's decision). Returns the kept
 * dates after each day, by day.
 */
function simulate(retention: Retention, days = 400): Map<string, string[]> {
  let live: RetainedBackup[] = [];
  const byDay = new Map<string, string[]>();
  const start = at('2026-01-01').getTime();
  for (let i = 0; i < days; i++) {
    live.push({ id: i + 1, at: new Date(start + i * DAY) });
    const keep = retainedIds(live, retention);
    live = live.filter((b) => keep.has(b.id));
    byDay.set(dateOf(new Date(start + i * DAY)), live.map((b) => dateOf(b.at)).sort());
  }
  return byDay;
}

describe('retention (GFS, Proxmox keep-* semantics)', () => {
  it('ISO weeks: 2026 has 53, its first week starts on 2025-12-29', () => {
    expect(isoWeekKey(new Date('2025-12-29T00:00:00Z'))).toBe('2026-W01');
    expect(isoWeekKey(new Date('2026-01-04T23:59:59Z'))).toBe('2026-W01');
    expect(isoWeekKey(new Date('2026-12-31T12:00:00Z'))).toBe('2026-W53');
    expect(isoWeekKey(new Date('2027-01-03T12:00:00Z'))).toBe('2026-W53');
    expect(isoWeekKey(new Date('2027-01-04T00:00:00Z'))).toBe('2027-W01');
  });

  // Written out by hand. Daily keeps the last 7 days. Weekly keeps the newest backup of each of the 4
  // ISO weeks before those the daily ones touch: a week's other days were pruned while daily still
  // touched it, so that is its Sunday. Monthly keeps, for each month neither touches, its newest
  // survivor: the last Sunday dated in that month (the days after it belong to the next month's week).
  const calendar = simulate({ daily: 7, weekly: 4, monthly: 6 });

  it('2026-06-15 (a Monday): 7 days, 4 Sundays, and the last Sunday of January to April', () => {
    expect(calendar.get('2026-06-15')).toEqual([
      '2026-01-25',
      '2026-02-22',
      '2026-03-29',
      '2026-04-26',
      '2026-05-17',
      '2026-05-24',
      '2026-05-31',
      '2026-06-07',
      '2026-06-09',
      '2026-06-10',
      '2026-06-11',
      '2026-06-12',
      '2026-06-13',
      '2026-06-14',
      '2026-06-15',
    ]);
  });

  it('2027-02-04 (day 400): weeks across the year end (2026-W53), six months back to July', () => {
    expect(calendar.get('2027-02-04')).toEqual([
      '2026-07-26',
      '2026-08-30',
      '2026-09-27',
      '2026-10-25',
      '2026-11-29',
      '2026-12-27',
      '2027-01-03',
      '2027-01-10',
      '2027-01-17',
      '2027-01-24',
      '2027-01-29',
      '2027-01-30',
      '2027-01-31',
      '2027-02-01',
      '2027-02-02',
      '2027-02-03',
      '2027-02-04',
    ]);
  });

  it('2026-01-10, before any week or month is left behind: every day of the first ten is still held', () => {
    // Daily: Jan 4-10; weekly: 2026-W01 is touched (Jan 4), so nothing older is a week of its own; the
    // days Jan 1-3 share week W01 with Jan 4 and were pruned as they left the daily window.
    expect(calendar.get('2026-01-10')).toEqual([
      '2026-01-04',
      '2026-01-05',
      '2026-01-06',
      '2026-01-07',
      '2026-01-08',
      '2026-01-09',
      '2026-01-10',
    ]);
  });

  it('every day: the newest backup kept, never more than daily + weekly + monthly', () => {
    for (const [day, kept] of calendar) {
      expect(kept[kept.length - 1]).toBe(day);
      expect(kept.length).toBeLessThanOrEqual(7 + 4 + 6);
    }
  });

  it('all counts 0 keeps everything (no setting removes every backup)', () => {
    const backups = [1, 2, 3].map((id) => ({ id, at: new Date(Date.UTC(2026, 0, id)) }));
    expect([...retainedIds(backups, { daily: 0, weekly: 0, monthly: 0 })].sort()).toEqual([1, 2, 3]);
  });

  it('a backup can answer several rules: daily 1 + weekly 1 on one backup keeps one more week back', () => {
    // Three backups: Wed and Thu of one week, Sunday of the week before.
    const backups = [
      { id: 1, at: new Date('2026-03-01T03:00:00Z') }, // Sunday, W09
      { id: 2, at: new Date('2026-03-04T03:00:00Z') }, // Wednesday, W10
      { id: 3, at: new Date('2026-03-05T03:00:00Z') }, // Thursday, W10
    ];
    expect([...retainedIds(backups, { daily: 1, weekly: 1, monthly: 0 })].sort()).toEqual([1, 3]);
    expect([...retainedIds(backups, { daily: 0, weekly: 1, monthly: 0 })].sort()).toEqual([3]);
  });

  it('cost is linear: 10x the backups cost well under the 100x a quadratic pass would', () => {
    const make = (n: number) => Array.from({ length: n }, (_, i) => ({ id: i, at: new Date(i * 3_600_000) }));
    // The fastest of five runs: the machine is shared, a slow run says nothing about the code.
    const time = (n: number) => {
      const input = make(n);
      let best = Infinity;
      for (let k = 0; k < 5; k++) {
        const t = process.hrtime.bigint();
        retainedIds(input, { daily: 100, weekly: 100, monthly: 100 });
        best = Math.min(best, Number(process.hrtime.bigint() - t));
      }
      return best;
    };
    time(5000); // warm up
    expect(time(50_000) / time(5000)).toBeLessThan(40);
  });
});
