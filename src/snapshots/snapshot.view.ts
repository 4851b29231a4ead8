import { apiTime } from '../common/clock';

export interface SnapshotRow {
  id: number;
  name: string;
  description: string;
  status: 'in_progress' | 'completed' | 'failed';
  progress: number;
  sizeBytes: bigint | null;
  consistency: 'stopped' | 'quiesced' | 'crash_consistent' | null;
  error: string | null;
  createdAt: Date;
  completedAt: Date | null;
  server: { id: number; name: string };
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
} as const;

const MIB = 1024 * 1024;

/** Bytes as whole MiB, rounded up (null stays null). */
export function mebibytes(bytes: bigint | null): number | null {
  return bytes === null ? null : Math.ceil(Number(bytes) / MIB);
}

/** The published fields first, in the published order, then this service's additions. */
export function snapshotView(s: SnapshotRow) {
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
  };
}
