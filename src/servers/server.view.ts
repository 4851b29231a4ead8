/** What the server endpoints answer: response classes (the OpenAPI document's source) and their builders. */
import { ApiProperty, ApiSchema } from '@nestjs/swagger';
import { apiTime } from '../common/clock';
import { PageOf } from '../common/pagination';
import { ActionSummary } from '../actions/action.view';
import { ServerStatus } from '../generated/prisma/enums';
import { COUNT, DATE_TIME, ID } from '../openapi/properties';
import type { ServerSummary } from './servers.service';
import { Labels, labelsOf, LabelsProperty } from '../labels/labels';

@ApiSchema({ name: 'SnapshotQuota', description: 'Live snapshots of the server against the limit.' })
export class SnapshotQuota {
  @ApiProperty({ ...COUNT, example: 5 })
  limit!: number;

  @ApiProperty({
    ...COUNT,
    example: 2,
    description: '`in_progress` and `completed` snapshots count; failed and deleted ones do not.',
  })
  used!: number;
}

@ApiSchema({ name: 'BackupQuota', description: 'Live manual backups of the server against the limit.' })
export class BackupQuota {
  @ApiProperty({ ...COUNT, example: 10 })
  limit!: number;

  @ApiProperty({
    ...COUNT,
    example: 3,
    description:
      'Manual backups `in_progress`, `completed` or `corrupt`; failed, deleted and automatic ones do not count.',
  })
  used!: number;
}

@ApiSchema({ name: 'BackupRun', description: 'What the schedule did with one slot.' })
export class BackupRunView {
  @ApiProperty({ ...DATE_TIME, description: "The slot: the window's start plus the server's offset in it." })
  slot_at!: string;

  @ApiProperty({ ...DATE_TIME, description: 'When the scheduler took it.' })
  ran_at!: string;

  @ApiProperty({
    example: false,
    description:
      'Taken after its window had closed (the service was down); the event `backup_policy.missed` says so.',
  })
  late!: boolean;

  @ApiProperty({
    enum: [
      'in_progress',
      'completed',
      'failed',
      'corrupt',
      'skipped_previous_running',
      'skipped_server_busy',
    ],
    example: 'completed',
    description:
      "Its backup's status, or why no backup was made: the previous automatic backup was still running, or " +
      'another create or restore held the server.',
  })
  outcome!: string;

  @ApiProperty({ ...ID, nullable: true, example: 3101, description: 'The automatic backup it made.' })
  backup_id!: number | null;
}

@ApiSchema({ name: 'BackupPolicySummary', description: "The server's automatic backups at a glance." })
export class BackupPolicySummary {
  @ApiProperty({ example: false })
  enabled!: boolean;

  @ApiProperty({
    ...DATE_TIME,
    nullable: true,
    description:
      'The next automatic backup (a time in the past: due, taken within a minute); null while disabled.',
  })
  next_run_at!: string | null;

  @ApiProperty({ type: BackupRunView, nullable: true, description: 'The last slot taken, if any.' })
  last_run!: BackupRunView | null;
}

@ApiSchema({ name: 'Server', description: 'One of the account’s servers.' })
export class ServerView {
  @ApiProperty({ ...ID, example: 12345 })
  id!: number;

  @ApiProperty({ example: 'web-server-01' })
  name!: string;

  @ApiProperty({ enum: ServerStatus, enumName: 'ServerStatus', example: 'running' })
  status!: ServerStatus;

  @ApiProperty(DATE_TIME)
  created_at!: string;

  @ApiProperty({ type: SnapshotQuota })
  snapshot_quota!: SnapshotQuota;

  @ApiProperty({
    type: ActionSummary,
    nullable: true,
    description: 'The pending or running create/restore on this server, if any.',
  })
  current_action!: ActionSummary | null;

  @ApiProperty({ type: BackupQuota })
  backup_quota!: BackupQuota;

  @ApiProperty({ type: BackupPolicySummary })
  backup_policy!: BackupPolicySummary;

  @LabelsProperty()
  labels?: Labels;
}

export const ServerPage = PageOf(ServerView, { description: 'A page of servers, by id.' });

@ApiSchema({ name: 'AdminServer', description: 'A server as an operator registered it.' })
export class AdminServerView {
  @ApiProperty({ ...ID, example: 12345 })
  id!: number;

  @ApiProperty({ ...ID, example: 7 })
  account_id!: number;

  @ApiProperty({ ...ID, example: 1 })
  node_id!: number;

  @ApiProperty({ example: 'web-server-01' })
  name!: string;

  @ApiProperty({ enum: ServerStatus, enumName: 'ServerStatus', example: 'running' })
  status!: ServerStatus;

  @ApiProperty({ example: 'web-server-01', description: 'libvirt domain name on the node.' })
  domain!: string;

  @ApiProperty({
    type: String,
    format: 'uuid',
    nullable: true,
    example: '4dea22b3-1d52-d8f3-2516-782e98ab3fa0',
    description: "The domain's libvirt UUID; null until the worker records it before the first operation.",
  })
  domain_uuid!: string | null;

  @ApiProperty({ example: '/var/lib/libvirt/images/web-server-01.qcow2' })
  disk_path!: string;

  @ApiProperty(DATE_TIME)
  created_at!: string;
}

export function serverView(s: ServerSummary): ServerView {
  return {
    id: s.id,
    name: s.name,
    status: s.status,
    created_at: apiTime(s.createdAt),
    snapshot_quota: s.snapshotQuota,
    current_action: s.currentAction,
    backup_quota: s.backupQuota,
    backup_policy: {
      enabled: s.backupPolicy.enabled,
      next_run_at: apiTime(s.backupPolicy.nextRunAt),
      last_run: s.backupPolicy.lastRun && {
        slot_at: apiTime(s.backupPolicy.lastRun.slotAt),
        ran_at: apiTime(s.backupPolicy.lastRun.ranAt),
        late: s.backupPolicy.lastRun.late,
        outcome: s.backupPolicy.lastRun.outcome,
        backup_id: s.backupPolicy.lastRun.backupId,
      },
    },
    labels: labelsOf(s.labels),
  };
}

export function adminServerView(s: {
  id: number;
  accountId: number;
  nodeId: number;
  name: string;
  status: ServerStatus;
  domain: string;
  domainUuid: string | null;
  diskPath: string;
  createdAt: Date;
}): AdminServerView {
  return {
    id: s.id,
    account_id: s.accountId,
    node_id: s.nodeId,
    name: s.name,
    status: s.status,
    domain: s.domain,
    domain_uuid: s.domainUuid,
    disk_path: s.diskPath,
    created_at: apiTime(s.createdAt),
  };
}
