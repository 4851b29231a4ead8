/**
 * Which automatic backups retention keeps (pure): grandfather-father-son with Proxmox's `keep-*`
 * semantics. The rules run in order — daily, weekly, monthly — over the backups newest first; each keeps
 * the newest backup of each of its periods (UTC day, ISO week, calendar month) until it has kept its
 * count, and skips the periods an earlier rule already covers (so `weekly: 4` keeps four weeks older than
 * the daily ones: one backup can answer several rules, and the next rule reaches further back). A backup
 * no rule keeps is pruned. A policy whose counts are all 0 keeps everything (as Proxmox's `keep-all`):
 * no setting deletes every backup, and with any count above 0 the newest backup is always kept.
 */

export interface Retention {
  daily: number;
  weekly: number;
  monthly: number;
}

export interface RetainedBackup {
  id: number;
  at: Date;
}

const pad = (n: number) => String(n).padStart(2, '0');

function dayKey(d: Date): string {
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
}

/** ISO 8601 week: the week (Monday–Sunday) holding the date's Thursday, named by that Thursday's year. */
export function isoWeekKey(d: Date): string {
  const day = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  const thursday = new Date(day + (3 - ((new Date(day).getUTCDay() + 6) % 7)) * 86_400_000);
  const yearStart = Date.UTC(thursday.getUTCFullYear(), 0, 1);
  const week = Math.floor((thursday.getTime() - yearStart) / 86_400_000 / 7) + 1;
  return `${thursday.getUTCFullYear()}-W${pad(week)}`;
}

function monthKey(d: Date): string {
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}`;
}

/** The ids retention keeps. Linear in the number of backups (after sorting). */
export function retainedIds(backups: readonly RetainedBackup[], r: Retention): Set<number> {
  if (r.daily === 0 && r.weekly === 0 && r.monthly === 0) return new Set(backups.map((b) => b.id));
  const newestFirst = [...backups].sort((a, b) => b.at.getTime() - a.at.getTime() || b.id - a.id);
  const marked = new Map<number, boolean>(); // id → kept
  const rules: [number, (d: Date) => string][] = [
    [r.daily, dayKey],
    [r.weekly, isoWeekKey],
    [r.monthly, monthKey],
  ];
  for (const [keep, periodOf] of rules) {
    if (keep === 0) continue;
    const covered = new Set(newestFirst.filter((b) => marked.get(b.id) === true).map((b) => periodOf(b.at)));
    const kept = new Set<string>();
    for (const b of newestFirst) {
      if (marked.has(b.id)) continue;
      const period = periodOf(b.at);
      if (covered.has(period)) continue;
      if (kept.has(period)) {
        marked.set(b.id, false);
        continue;
      }
      if (kept.size >= keep) break;
      kept.add(period);
      marked.set(b.id, true);
    }
  }
  return new Set([...marked].filter(([, keep]) => keep).map(([id]) => id));
}
