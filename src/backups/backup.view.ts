import { apiTime } from '../common/clock';
import { mebibytes } from '../snapshots/snapshot.view';
import { BackupKind, BackupMode, BackupStatus, SnapshotConsistency } from '../generated/prisma/client';

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
} as const;

/** In the snapshot's field order (Part 3: a client of snapshots reads backups), then backups' own fields. */
export function backupView(b: BackupRow) {
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
    mode_reason: b.modeReason,
    error: b.error,
  };
}
