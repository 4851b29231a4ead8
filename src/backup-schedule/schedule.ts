/**
 * When a backup policy's slots fall (pure: times in, times out). A policy runs daily, or weekly on one
 * weekday, in a UTC window starting at `hour` (4 hours: the contract's); each server starts at its own
 * stable offset inside the window, so a node's servers do not all start at once. Slots form a regular
 * lattice (UTC has no daylight saving): one per period, at window start + offset.
 *
 * A shorter window (BACKUP_WINDOW_MINUTES, for demos and tests) shrinks the schedule's whole clock with
 * it, so `hour` and `weekday` keep their meaning on a faster calendar: a schedule hour lasts a quarter
 * of the window and a schedule day six windows (days counted from the Unix epoch, a Thursday).
 */

/** The contract's window: 4 hours. */
export const WINDOW_MS = 4 * 3_600_000;
/** 1970-01-01, day 0 of every schedule calendar, was a Thursday. */
const EPOCH_WEEKDAY = 4;

export interface Schedule {
  frequency: 'daily' | 'weekly';
  /** 0 = Sunday … 6 (weekly only). */
  weekday: number | null;
  /** Schedule hour (UTC) the window starts. */
  hour: number;
  /** The window's length (WINDOW_MS but in demos and tests); a schedule hour is a quarter of it. */
  windowMs: number;
}

/** A policy's schedule under the deployment's window (AppConfig.backupWindowMinutes). */
export function scheduleOf(
  policy: { frequency: 'daily' | 'weekly'; weekday: number | null; hour: number },
  windowMinutes: number,
): Schedule {
  return {
    frequency: policy.frequency,
    weekday: policy.weekday,
    hour: policy.hour,
    windowMs: windowMinutes * 60_000,
  };
}

const hourMs = (s: Schedule) => s.windowMs / 4;
const dayMs = (s: Schedule) => s.windowMs * 6;

/** The server's start within the window, in whole seconds: a multiplicative hash of its id. */
export function windowOffsetMs(serverId: number, windowMs: number): number {
  const h = Math.imul(serverId, 2654435761) >>> 0;
  return Math.floor((h / 2 ** 32) * (windowMs / 1000)) * 1000;
}

export function periodMs(s: Schedule): number {
  return s.frequency === 'weekly' ? 7 * dayMs(s) : dayMs(s);
}

/** The latest window start at or before `t` (ms). */
function windowStartAtOrBefore(s: Schedule, t: number): number {
  const dayNumber = Math.floor(t / dayMs(s));
  let start = dayNumber * dayMs(s) + s.hour * hourMs(s);
  if (s.frequency === 'weekly') {
    const dow = (dayNumber + EPOCH_WEEKDAY) % 7;
    start -= ((dow - (s.weekday ?? 0) + 7) % 7) * dayMs(s);
  }
  return start > t ? start - periodMs(s) : start;
}

/** The server's latest slot at or before `t`. */
export function slotAtOrBefore(s: Schedule, serverId: number, t: Date): Date {
  const offset = windowOffsetMs(serverId, s.windowMs);
  return new Date(windowStartAtOrBefore(s, t.getTime() - offset) + offset);
}

/** The server's first slot at or after `t`. */
export function slotAtOrAfter(s: Schedule, serverId: number, t: Date): Date {
  const before = slotAtOrBefore(s, serverId, t);
  return before.getTime() === t.getTime() ? before : new Date(before.getTime() + periodMs(s));
}

/** When the slot's window closes: a run taken after this is late. */
export function windowEndOf(s: Schedule, serverId: number, slot: Date): Date {
  return new Date(slot.getTime() - windowOffsetMs(serverId, s.windowMs) + s.windowMs);
}

/** What the scheduler owes a server at `now`, given its last run's slot and when its schedule began. */
export interface SlotDecision {
  /** The slot to run now, or null when nothing is due. */
  due: Date | null;
  /** Owed slots before `due` that got no run (all schedulers were down). */
  missed: number;
  /** `due` is taken after its window closed. */
  late: boolean;
  /** The next run: `due` when one is due now, else the next slot owed. */
  nextRunAt: Date;
}

/**
 * Only the latest owed slot is run: slots missed while every scheduler was down run once, late, not
 * once each. A slot before `since` (the schedule was switched on or changed after it) is not owed.
 */
export function decideSlot(
  s: Schedule,
  serverId: number,
  now: Date,
  lastSlotAt: Date | null,
  since: Date,
): SlotDecision {
  const period = periodMs(s);
  let owedFrom = slotAtOrAfter(s, serverId, since).getTime();
  if (lastSlotAt) owedFrom = Math.max(owedFrom, slotAtOrBefore(s, serverId, lastSlotAt).getTime() + period);
  const latest = slotAtOrBefore(s, serverId, now).getTime();
  if (latest < owedFrom) return { due: null, missed: 0, late: false, nextRunAt: new Date(owedFrom) };
  const due = new Date(latest);
  return {
    due,
    missed: Math.round((latest - owedFrom) / period),
    late: now.getTime() >= windowEndOf(s, serverId, due).getTime(),
    nextRunAt: due,
  };
}
