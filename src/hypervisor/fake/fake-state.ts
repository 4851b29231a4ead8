import { createHash } from 'node:crypto';
import * as path from 'node:path';

import { FakeCheckpoints, FakePower } from './fake-backup';

/** The fake driver's in-memory state: a domain, a stored snapshot, a half-written one, and their keys. */

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export interface FakeDomain {
  readonly name: string;
  readonly uuid: string;
  readonly diskPath: string | undefined;
  power: FakePower;
  disk: Buffer;
  readonly gracefulShutdown: boolean;
  readonly checkpoints: FakeCheckpoints;
}

export interface StoredSnapshot {
  bytes: Buffer;
  /** Digest of the complete copy, checked by restore (the fake's "qemu-img check"). */
  readonly sha256: string;
}

export interface PartialSnapshot {
  readonly snapshotDir: string;
  readonly id: number;
  /** Identity of the operation writing it; undefined for a leftover made by `markPartial`. */
  readonly owner: object | undefined;
}

export function normalizeDir(dir: string): string {
  return path.posix.resolve('/', dir);
}

export function snapshotKey(snapshotDir: string, id: number): string {
  return `${normalizeDir(snapshotDir)}\u0000${id}`;
}
