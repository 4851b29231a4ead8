import { apiTime } from '../common/clock';
import { ServerSummary } from './servers.service';

export function serverView(s: ServerSummary) {
  return {
    id: s.id,
    name: s.name,
    status: s.status,
    created_at: apiTime(s.createdAt),
    snapshot_quota: s.snapshotQuota,
    current_action: s.currentAction,
    backup_quota: s.backupQuota,
    // next_run_at stays null until automatic backups are scheduled.
    backup_policy: { enabled: s.backupPolicyEnabled, next_run_at: null },
  };
}
