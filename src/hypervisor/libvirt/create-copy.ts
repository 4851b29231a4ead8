import { promises as fsp } from 'node:fs';

import { hvError, scaled, throwIfAborted } from '../driver-errors';
import { byteCopy, underImageLock } from './copy/byte-copy';
import { convert } from './copy/convert';
import { allocatedBytes, fileSize, fsyncFile } from './files';
import { hashFile } from './restore-copy';
import { together } from './together';
import { Toolbox } from './tools/toolbox';

/** A create's copy once verified and durable: what its manifest and result record. */
export interface VerifiedCopy {
  readonly sha256: string;
  readonly bytes: number;
  /** Bytes the copy occupies on disk (the snapshot's size). */
  readonly actualSize: number;
}

type Hashed = { sha256: string; bytes: number };

/**
 * The copy of a shut-off disk into `partial`, verified. A plain disk (see `ImageInfo.plain`) is
 * copied byte for byte under its image lock, and its sha256 is taken from the disk **while** `cp`
 * copies it: the lock keeps the disk unchanged from before the copy starts until both have ended, so
 * the hash is that of the bytes `cp` copies, without a second pass over the copy afterwards (the
 * pass was the critical path after the copy: docs/benchmarks.md, *3*). The hash follows `cp` (see
 * copiedUpTo) and reads the pages `cp` has just read: the disk is read once. The copy's check and
 * fsync start as soon as `cp` ends. A restore of the
 * snapshot hashes what it copied against this manifest, so a copy that did not match the disk would
 * be refused there, never restored. Otherwise — or when the disk stopped being plain before the lock
 * was held — `qemu-img convert` copies it and the copy is hashed (see verifyCopy).
 */
export async function copyShutOffDisk(
  tools: Toolbox,
  disk: string,
  partial: string,
  o: {
    plain: boolean;
    compress: boolean;
    signal?: AbortSignal;
    virtualSize: number;
    onPct: (pct: number) => void;
  },
): Promise<VerifiedCopy> {
  const { signal, virtualSize } = o;
  const copied = !o.plain
    ? null
    : await underImageLock(tools, disk, { signal, virtualSize }, (length) => {
        let copying = true;
        return together(signal, [
          async (s) => {
            try {
              await byteCopy(tools, disk, partial, {
                signal: s,
                virtualSize,
                bytes: length,
                onPct: scaled(o.onPct, 0, 90),
              });
            } finally {
              copying = false;
            }
            return checkAndSync(tools, partial, virtualSize, true, s);
          },
          (s) =>
            tools.hasher.sha256(disk, {
              signal: s,
              before: (end) => copiedUpTo(partial, end, () => copying, s),
            }),
        ] as const);
      });
  if (copied) return verified(partial, copied[0], copied[1]);
  await convert(tools, disk, partial, { ...o, onPct: scaled(o.onPct, 0, 90) });
  throwIfAborted(signal);
  return verifyCopy(tools, partial, virtualSize, signal, scaled(o.onPct, 90, 99));
}

/** Time between looks at the copy's length while the hash waits for `cp` to get ahead of it. */
const PACE_MS = 10;

/**
 * Resolves once `cp` has written `copy` up to `end` (its reads of the disk are then in the page cache),
 * or has ended, or `signal` aborted. The hash of the disk follows `cp` this way: were it ahead, `cp`
 * would wait on the hash's reads — paced by a CPU-bound pass — and the copy's fsync would start later.
 */
async function copiedUpTo(
  copy: string,
  end: number,
  copying: () => boolean,
  signal: AbortSignal,
): Promise<void> {
  while (copying() && !signal.aborted && ((await fileSize(copy)) ?? 0) < end) {
    await new Promise((resolve) => setTimeout(resolve, PACE_MS));
  }
}

/**
 * The copy complete in the page cache, verified: the check (metadata reads), the fsync (waits on the
 * disk) and the sha256 pass (reads the cached file, waits on the CPU) at once. Any failure stops the
 * others; the caller commits nothing before all three succeeded.
 */
export async function verifyCopy(
  tools: Toolbox,
  partial: string,
  virtualSize: number,
  signal: AbortSignal | undefined,
  onPct: (pct: number) => void,
): Promise<VerifiedCopy> {
  const expectedBytes = (await fsp.stat(partial)).size;
  const [checked, hashed] = await together(signal, [
    (s) => checkAndSync(tools, partial, virtualSize, false, s),
    (s) => hashFile(tools, partial, expectedBytes, s, onPct),
  ] as const);
  return verified(partial, checked, hashed);
}

/**
 * `qemu-img check` of the copy (leaks allowed for a byte copy: harmless, carried from the disk) beside
 * owner-only mode and the fsync, then its allocated size.
 */
async function checkAndSync(
  tools: Toolbox,
  partial: string,
  virtualSize: number,
  allowLeaks: boolean,
  signal: AbortSignal,
): Promise<{ fileBytes: number; actualSize: number }> {
  const [check, actualSize] = await together(signal, [
    (s) => tools.qemuImg.verify(partial, virtualSize, s, 'verification_failed', allowLeaks),
    async () => {
      await fsp.chmod(partial, 0o600);
      await fsyncFile(partial);
      return allocatedBytes(partial);
    },
  ] as const);
  return { fileBytes: check.fileBytes, actualSize };
}

/** The hashed length must be the checked copy's: anything else is a copy that is not what was hashed. */
function verified(
  partial: string,
  checked: { fileBytes: number; actualSize: number },
  hashed: Hashed,
): VerifiedCopy {
  if (hashed.bytes !== checked.fileBytes) {
    throw hvError(
      'verification_failed',
      `${partial} is not what was hashed (${hashed.bytes} bytes hashed, ${checked.fileBytes} checked)`,
    );
  }
  return { sha256: hashed.sha256, bytes: hashed.bytes, actualSize: checked.actualSize };
}
