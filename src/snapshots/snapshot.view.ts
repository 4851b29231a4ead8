/**
 * What the snapshot endpoints answer: the response classes (the OpenAPI document is generated from
 * them) and the functions that build those bodies from rows, typed by the classes so that a field
 * added to one and not the other does not compile.
 *
 * `required` lists what the published contract guarantees. The fields this service adds to the
 * published bodies (`progress`, `consistency`, `completed_at`, `error`, `protection`, `action_id`) are always sent
 * but are not `required`, so that the published examples stay valid responses.
 */
import { ApiProperty, ApiPropertyOptional, ApiSchema } from '@nestjs/swagger';
import { apiTime } from '../common/clock';
import { Lang, message } from '../common/messages';
import { PageOf } from '../common/pagination';
import { ServerStatus, SnapshotConsistency, SnapshotKind, SnapshotStatus } from '../generated/prisma/enums';
import { DATE_TIME, ID, PERCENT } from '../openapi/properties';
import { RESOURCE_NAME, RESOURCE_NAME_MAX } from '../common/resource-fields';
import { ProtectionView, protectionView } from '../common/delete-protection';
import { Labels, labelsOf, LabelsProperty } from '../labels/labels';

export interface SnapshotRow {
  id: number;
  name: string;
  description: string;
  status: SnapshotStatus;
  progress: number;
  sizeBytes: bigint | null;
  consistency: SnapshotConsistency | null;
  error: string | null;
  createdAt: Date;
  completedAt: Date | null;
  server: { id: number; name: string };
  deleteProtected: boolean;
  /** As stored (a jsonb object). */
  labels: unknown;
  kind: SnapshotKind;
  expiresAt: Date | null;
}

/** The columns a snapshot response needs, and nothing else. */
export const SNAPSHOT_COLUMNS = {
  id: true,
  name: true,
  description: true,
  status: true,
  progress: true,
  sizeBytes: true,
  consistency: true,
  error: true,
  createdAt: true,
  completedAt: true,
  server: { select: { id: true, name: true } },
  deleteProtected: true,
  labels: true,
  kind: true,
  expiresAt: true,
} as const;

const MIB = 1024 * 1024;
const SNAPSHOT_NAME_PROPERTY = {
  example: 'pre-migration-snapshot',
  pattern: RESOURCE_NAME.source,
  minLength: 1,
  maxLength: RESOURCE_NAME_MAX,
};

@ApiSchema({ name: 'ServerRef', description: 'The server a resource belongs to.' })
export class ServerRef {
  @ApiProperty({ ...ID, example: 12345 })
  id!: number;

  @ApiProperty({ example: 'web-server-01' })
  name!: string;
}

@ApiSchema({ name: 'Snapshot', description: 'A point-in-time copy of a server’s disks.' })
export class SnapshotView {
  @ApiProperty({ ...ID, example: 801 })
  id!: number;

  @ApiProperty({ type: ServerRef })
  server!: ServerRef;

  @ApiProperty(SNAPSHOT_NAME_PROPERTY)
  name!: string;

  @ApiProperty({ enum: SnapshotStatus, enumName: 'SnapshotStatus', example: 'completed' })
  status!: SnapshotStatus;

  @ApiProperty({
    type: 'integer',
    format: 'int64',
    minimum: 0,
    nullable: true,
    example: 5120,
    description: 'Size of the stored copy in MiB (rounded up); null until the snapshot is completed.',
  })
  size_mb!: number | null;

  @ApiProperty(DATE_TIME)
  created_at!: string;

  @ApiProperty({ example: 'Before major migration', description: '"" when none was given.' })
  description!: string;

  @ApiPropertyOptional({ ...PERCENT, example: 100, description: 'Copy progress in percent.' })
  progress?: number;

  @ApiPropertyOptional({
    enum: SnapshotConsistency,
    enumName: 'SnapshotConsistency',
    nullable: true,
    example: 'quiesced',
    description:
      'How the copy was taken: `stopped` (server was off), `quiesced` (guest agent froze the ' +
      'filesystems), `crash_consistent` (neither). Null until known.',
  })
  consistency?: SnapshotConsistency | null;

  @ApiPropertyOptional({ ...DATE_TIME, nullable: true, description: 'When it completed.' })
  completed_at?: string | null;

  @ApiPropertyOptional({
    type: String,
    nullable: true,
    example: null,
    description: 'Why a `failed` snapshot failed.',
  })
  error?: string | null;

  @ApiPropertyOptional({ type: ProtectionView })
  protection?: ProtectionView;
  @LabelsProperty()
  labels?: Labels;
  @ApiPropertyOptional({
    enum: SnapshotKind,
    enumName: 'SnapshotKind',
    example: 'manual',
    description:
      '`pre_restore`: the safety copy a restore took of the disk it replaced (it takes no slot of the ' +
      'limit; undo the restore with `POST /api/v1/actions/{id}/undo/`).',
  })
  kind?: SnapshotKind;

  @ApiPropertyOptional({
    ...DATE_TIME,
    nullable: true,
    example: null,
    description: 'When a `pre_restore` snapshot is removed; null for the others.',
  })
  expires_at?: string | null;
}

export const SnapshotPage = PageOf(SnapshotView, {
  description: 'A page of snapshots, newest first by default.',
  linksRequired: false,
});

@ApiSchema({ name: 'SnapshotCreated', description: 'The new snapshot, being created.' })
export class SnapshotCreatedView extends SnapshotView {
  @ApiProperty({
    example: 'Snapshot is being created. This may take 3-10 minutes depending on server size.',
    description: 'English, or Welsh with `Accept-Language: cy`.',
  })
  message!: string;

  @ApiPropertyOptional({
    ...ID,
    example: 9001,
    description: 'The action to poll at `/api/v1/actions/{action_id}/`.',
  })
  action_id?: number;
}

@ApiSchema({ name: 'RestoreSnapshotRef', description: 'The snapshot being restored.' })
export class RestoreSnapshotRef {
  @ApiProperty({ ...ID, example: 801 })
  id!: number;

  @ApiProperty(SNAPSHOT_NAME_PROPERTY)
  name!: string;

  @ApiProperty(DATE_TIME)
  created_at!: string;
}

@ApiSchema({ name: 'RestoreServerRef', description: 'The server being restored.' })
export class RestoreServerRef extends ServerRef {
  @ApiProperty({ enum: [ServerStatus.restoring], example: ServerStatus.restoring })
  status!: typeof ServerStatus.restoring;
}

@ApiSchema({ name: 'RestoreStarted', description: 'The restoration has started.' })
export class RestoreStartedView {
  @ApiProperty({ enum: ['success'], example: 'success' })
  status!: 'success';

  @ApiProperty({
    example: 'Server is being restored from snapshot. This may take 5-15 minutes.',
    description: 'English, or Welsh with `Accept-Language: cy`.',
  })
  message!: string;

  @ApiProperty({ type: RestoreSnapshotRef })
  snapshot!: RestoreSnapshotRef;

  @ApiProperty({ type: RestoreServerRef })
  server!: RestoreServerRef;

  @ApiPropertyOptional({
    ...ID,
    example: 9002,
    description: 'The action to poll at `/api/v1/actions/{action_id}/`.',
  })
  action_id?: number;
}

/** Bytes as whole MiB, rounded up (null stays null). */
export function mebibytes(bytes: bigint | null): number | null {
  return bytes === null ? null : Math.ceil(Number(bytes) / MIB);
}

/** The published fields first, in the published order, then this service's additions. */
export function snapshotView(s: SnapshotRow): SnapshotView {
  return {
    id: s.id,
    server: { id: s.server.id, name: s.server.name },
    name: s.name,
    status: s.status,
    size_mb: s.status === 'completed' ? mebibytes(s.sizeBytes) : null,
    created_at: apiTime(s.createdAt),
    description: s.description,
    progress: s.progress,
    consistency: s.consistency,
    completed_at: apiTime(s.completedAt),
    error: s.error,
    protection: protectionView(s.deleteProtected),
    labels: labelsOf(s.labels),
    kind: s.kind,
    expires_at: apiTime(s.expiresAt),
  };
}

export function snapshotCreatedView(s: SnapshotRow, actionId: number, lang: Lang): SnapshotCreatedView {
  return { ...snapshotView(s), message: message('snapshot_create_started', lang), action_id: actionId };
}

export function restoreStartedView(
  snap: { id: number; name: string; createdAt: Date },
  server: { id: number; name: string },
  actionId: number,
  lang: Lang,
): RestoreStartedView {
  return {
    status: 'success',
    message: message('restore_started', lang),
    snapshot: { id: snap.id, name: snap.name, created_at: apiTime(snap.createdAt) },
    server: { id: server.id, name: server.name, status: ServerStatus.restoring },
    action_id: actionId,
  };
}
