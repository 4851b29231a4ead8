import { BackupPolicy as PolicyRow } from '../generated/prisma/client';

/** A server's backup policy as the API shows and takes it (Part 3). */
export interface BackupPolicy {
  enabled: boolean;
  schedule: { frequency: 'daily' | 'weekly'; weekday: number | null; hour: number };
  retention: { daily: number; weekly: number; monthly: number };
}

/** The policy of a server that has none stored: off, with Part 3's example retention. */
export const DEFAULT_BACKUP_POLICY: BackupPolicy = {
  enabled: false,
  schedule: { frequency: 'daily', weekday: null, hour: 0 },
  retention: { daily: 7, weekly: 4, monthly: 0 },
};

export function policyOfRow(r: PolicyRow): BackupPolicy {
  return {
    enabled: r.enabled,
    schedule: { frequency: r.frequency, weekday: r.frequency === 'weekly' ? r.weekday : null, hour: r.hour },
    retention: { daily: r.retentionDaily, weekly: r.retentionWeekly, monthly: r.retentionMonthly },
  };
}

export function policyRowOf(p: BackupPolicy): Omit<PolicyRow, 'serverId' | 'updatedAt' | 'scheduleSince'> {
  return {
    enabled: p.enabled,
    frequency: p.schedule.frequency,
    weekday: p.schedule.frequency === 'weekly' ? p.schedule.weekday : null,
    hour: p.schedule.hour,
    retentionDaily: p.retention.daily,
    retentionWeekly: p.retention.weekly,
    retentionMonthly: p.retention.monthly,
  };
}

/** Whether `next` starts a new schedule (switched on, or its slots moved): slots before it are not owed. */
export function startsNewSchedule(prev: PolicyRow | null, next: ReturnType<typeof policyRowOf>): boolean {
  if (!next.enabled) return false;
  return (
    !prev ||
    !prev.enabled ||
    prev.frequency !== next.frequency ||
    prev.weekday !== next.weekday ||
    prev.hour !== next.hour
  );
}
