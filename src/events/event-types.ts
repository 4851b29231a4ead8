/**
 * Every event an account can receive (webhooks, `GET /api/v1/events/`). Operation outcomes
 * (`snapshot.completed|failed`, `backup.completed|failed`, `restore.*`, `power_action.*`) are written by the trigger on actions
 * (migration 20261207000000_events), whose names are `<subject>.completed|failed`; a change of delete
 * protection (`*.protection_changed`) by the triggers on snapshots and backups (migration
 * 20261209050000_protection_events); the rest by the code that makes the change, through the SQL
 * function `emit_event`, in the same transaction.
 */
export const EVENT_TYPES = [
  'snapshot.completed',
  'snapshot.failed',
  'snapshot.protection_changed',
  'backup.completed',
  'backup.failed',
  'backup.pruned',
  'backup.corrupt',
  'backup.protection_changed',
  'restore.completed',
  'restore.failed',
  'backup_policy.missed',
  'power_action.completed',
  'power_action.failed',
] as const;

export type EventType = (typeof EVENT_TYPES)[number];
