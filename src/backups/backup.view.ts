/**
 * What the backup endpoints answer: the response classes (the OpenAPI document is generated from them)
 * and the functions that build those bodies from rows, typed by the classes. A backup has the
 * snapshot's fields in the snapshot's order (a client of snapshots reads backups), then its own.
 */
import { ApiProperty, ApiSchema } from '@nestjs/swagger';
import { apiTime } from '../common/clock';
import { Lang, message } from '../common/messages';
import { PageOf } from '../common/pagination';
import { RESOURCE_NAME, RESOURCE_NAME_MAX } from '../common/resource-fields';
import { ProtectionView, protectionView } from '../common/delete-protection';
import {
  BackupKind,
  BackupMode,
  BackupStatus,
  ServerStatus,
  SnapshotConsistency,
} from '../generated/prisma/enums';
import { FULL_READ_REASONS, FullReadReason } from '../hypervisor/hypervisor-driver';
import { DATE_TIME, ID, PERCENT } from '../openapi/properties';
import { mebibytes, RestoreServerRef, ServerRef } from '../snapshots/snapshot.view';
import { Labels, labelsOf, LabelsProperty } from '../labels/labels';

export interface BackupRow {
  id: number;
  name: string;
  description: string;
  kind: BackupKind;
  status: BackupStatus;
  progress: number;
  sizeBytes: bigint | null;
  storedBytes: bigint | null;
  consistency: SnapshotConsistency | null;
  mode: BackupMode | null;
  modeReason: string | null;
  error: string | null;
  createdAt: Date;
  completedAt: Date | null;
  expiresAt: Date | null;
  verifiedAt: Date | null;
  server: { id: number; name: string };
  deleteProtected: boolean;
  /** As stored (a jsonb object). */
  labels: unknown;
}

/** The columns a backup response needs, and nothing else. */
export const BACKUP_COLUMNS = {
  id: true,
  name: true,
  description: true,
  kind: true,
  status: true,
  progress: true,
  sizeBytes: true,
  storedBytes: true,
  consistency: true,
  mode: true,
  modeReason: true,
  error: true,
  createdAt: true,
  completedAt: true,
  expiresAt: true,
  verifiedAt: true,
  server: { select: { id: true, name: true } },
  deleteProtected: true,
  labels: true,
} as const;

const MIB_FIELD = { type: 'integer', format: 'int64', minimum: 0, nullable: true } as const;
const BACKUP_NAME_PROPERTY = {
  example: 'nightly-2025-01-15',
  pattern: RESOURCE_NAME.source,
  minLength: 1,
  maxLength: RESOURCE_NAME_MAX,
};

@ApiSchema({
  name: 'Backup',
  description: 'A backup of a server’s disk in backup storage, apart from its host.',
})
export class BackupView {
  @ApiProperty({ ...ID, example: 3101 })
  id!: number;

  @ApiProperty({ type: ServerRef })
  server!: ServerRef;

  @ApiProperty(BACKUP_NAME_PROPERTY)
  name!: string;

  @ApiProperty({ enum: BackupKind, enumName: 'BackupKind', example: 'manual' })
  kind!: BackupKind;

  @ApiProperty({
    enum: BackupStatus,
    enumName: 'BackupStatus',
    example: 'completed',
    description:
      'A completed backup becomes `corrupt` when verification finds damage (it cannot be restored).',
  })
  status!: BackupStatus;

  @ApiProperty({
    ...MIB_FIELD,
    example: 5120,
    description: 'Disk data the backup holds, in MiB (rounded up); null until completed.',
  })
  size_mb!: number | null;

  @ApiProperty({
    ...MIB_FIELD,
    example: 312,
    description: 'What this backup added to backup storage, in MiB; null until completed.',
  })
  stored_mb!: number | null;

  @ApiProperty(DATE_TIME)
  created_at!: string;

  @ApiProperty({ example: 'Before the database upgrade', description: '"" when none was given.' })
  description!: string;

  @ApiProperty({ ...PERCENT, example: 100, description: 'Progress of the backup in percent.' })
  progress!: number;

  @ApiProperty({
    enum: SnapshotConsistency,
    enumName: 'SnapshotConsistency',
    nullable: true,
    example: 'quiesced',
    description: 'How the disk was read: `stopped`, `quiesced` or `crash_consistent`. Null until known.',
  })
  consistency!: SnapshotConsistency | null;

  @ApiProperty({ ...DATE_TIME, nullable: true, description: 'When it completed.' })
  completed_at!: string | null;

  @ApiProperty({
    ...DATE_TIME,
    nullable: true,
    description: 'Automatic backups: when retention removes it; null for manual ones.',
  })
  expires_at!: string | null;

  @ApiProperty({ ...DATE_TIME, nullable: true, description: 'When its chunks were last verified.' })
  verified_at!: string | null;

  @ApiProperty({
    enum: BackupMode,
    enumName: 'BackupMode',
    nullable: true,
    example: 'incremental',
    description:
      'Whether it read the whole disk or only what changed since the previous backup; null until completed.',
  })
  mode!: BackupMode | null;

  @ApiProperty({
    enum: FULL_READ_REASONS,
    enumName: 'FullReadReason',
    nullable: true,
    example: null,
    description: 'Why a full read was forced, when it was.',
  })
  mode_reason!: FullReadReason | null;

  @ApiProperty({
    type: String,
    nullable: true,
    example: null,
    description: 'Why a `failed` backup failed, or what verification found in a `corrupt` one.',
  })
  error!: string | null;

  @ApiProperty({ type: ProtectionView })
  protection!: ProtectionView;
  @LabelsProperty()
  labels?: Labels;
}

export const BackupPage = PageOf(BackupView, {
  description: 'A page of backups, newest first by default.',
  linksRequired: false,
});

@ApiSchema({ name: 'BackupCreated', description: 'The new backup, being created.' })
export class BackupCreatedView extends BackupView {
  @ApiProperty({
    example:
      'Backup is being created. This may take a few minutes depending on how much has changed since the last backup.',
    description: 'English, or Welsh with `Accept-Language: cy`.',
  })
  message!: string;

  @ApiProperty({ ...ID, example: 9101, description: 'The action to poll at `/api/v1/actions/{action_id}/`.' })
  action_id!: number;
}

@ApiSchema({ name: 'RestoreBackupRef', description: 'The backup being restored.' })
export class RestoreBackupRef {
  @ApiProperty({ ...ID, example: 3101 })
  id!: number;

  @ApiProperty(BACKUP_NAME_PROPERTY)
  name!: string;

  @ApiProperty(DATE_TIME)
  created_at!: string;
}

@ApiSchema({
  name: 'BackupRestoreStarted',
  description: 'The restoration has started (Part 1’s restore shape).',
})
export class BackupRestoreStartedView {
  @ApiProperty({ enum: ['success'], example: 'success' })
  status!: 'success';

  @ApiProperty({
    example: 'Server is being restored from backup. This may take a few minutes.',
    description: 'English, or Welsh with `Accept-Language: cy`.',
  })
  message!: string;

  @ApiProperty({ type: RestoreBackupRef })
  backup!: RestoreBackupRef;

  @ApiProperty({ type: RestoreServerRef, description: 'The server being restored (the target).' })
  server!: RestoreServerRef;

  @ApiProperty({ ...ID, example: 9102 })
  action_id!: number;
}

@ApiSchema({
  name: 'BackupVerifyStarted',
  description: 'The verification has started (the restore answer’s shape, without a server).',
})
export class BackupVerifyStartedView {
  @ApiProperty({ enum: ['success'], example: 'success' })
  status!: 'success';

  @ApiProperty({
    example:
      'Backup is being verified: every stored chunk is read back and checked. This may take a few minutes.',
    description: 'English, or Welsh with `Accept-Language: cy`.',
  })
  message!: string;

  @ApiProperty({ type: RestoreBackupRef, description: 'The backup being verified.' })
  backup!: RestoreBackupRef;

  @ApiProperty({
    ...ID,
    example: 9103,
    description: 'The verification to poll; an open one is answered again rather than started twice.',
  })
  action_id!: number;
}

/** In the snapshot's field order (Part 3: a client of snapshots reads backups), then backups' own fields. */
export function backupView(b: BackupRow): BackupView {
  const holdsData = b.status === 'completed' || b.status === 'corrupt';
  return {
    id: b.id,
    server: { id: b.server.id, name: b.server.name },
    name: b.name,
    kind: b.kind,
    status: b.status,
    size_mb: holdsData ? mebibytes(b.sizeBytes) : null,
    stored_mb: holdsData ? mebibytes(b.storedBytes) : null,
    created_at: apiTime(b.createdAt),
    description: b.description,
    progress: b.progress,
    consistency: b.consistency,
    completed_at: apiTime(b.completedAt),
    expires_at: apiTime(b.expiresAt),
    verified_at: apiTime(b.verifiedAt),
    mode: b.mode,
    // The column holds only what the data path reported (FULL_READ_REASONS).
    mode_reason: b.modeReason as FullReadReason | null,
    error: b.error,
    protection: protectionView(b.deleteProtected),
    labels: labelsOf(b.labels),
  };
}

export function backupCreatedView(b: BackupRow, actionId: number, lang: Lang): BackupCreatedView {
  return { ...backupView(b), message: message('backup_create_started', lang), action_id: actionId };
}

export function backupRestoreStartedView(
  backup: { id: number; name: string; createdAt: Date },
  server: { id: number; name: string },
  actionId: number,
  lang: Lang,
): BackupRestoreStartedView {
  return {
    status: 'success',
    message: message('backup_restore_started', lang),
    backup: { id: backup.id, name: backup.name, created_at: apiTime(backup.createdAt) },
    server: { id: server.id, name: server.name, status: ServerStatus.restoring },
    action_id: actionId,
  };
}

export function backupVerifyStartedView(
  backup: { id: number; name: string; createdAt: Date },
  actionId: number,
  lang: Lang,
): BackupVerifyStartedView {
  return {
    status: 'success',
    message: message('backup_verify_started', lang),
    backup: { id: backup.id, name: backup.name, created_at: apiTime(backup.createdAt) },
    action_id: actionId,
  };
}
