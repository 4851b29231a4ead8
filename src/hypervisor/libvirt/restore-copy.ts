import { promises as fsp } from 'node:fs';

import { hvError, scaled, throwIfAborted } from '../driver-errors';
import { ServerRef } from '../hypervisor-driver';
import { byteCopy } from './copy/byte-copy';
import { convert } from './copy/convert';
import { SnapshotFiles } from './snapshot-files';
import { SnapshotManifest } from './snapshot-manifest';
import { childController, together } from './together';
import { Toolbox } from './tools/toolbox';
import { fsyncFile } from './files';

/** A restore needs the server stopped: anything else is `invalid_power_state`. */
export function requireShutOffState(domain: string, state: string): void {
  if (state !== 'shut off') {
    throw hvError('invalid_power_state', `domain ${domain} is ${state}`, 'hypervisor_server_must_be_stopped');
  }
}

/**
 * Restore's copy of the snapshot into `restoring`, then — at once — the sha256 check against the
 * manifest, `qemu-img check` of the copy, owner/mode + fsync, and `domstate` again.
 *
 * - A standalone, clean, uncompressed snapshot is copied byte for byte (`cp --sparse=always`): a
 *   qcow2 file is position-independent, so the copy is the same disk, and the sha256 pass then
 *   reads the copy itself (just written, still in the page cache) — what the rename will commit is
 *   what the manifest describes. Otherwise (`zstd` snapshots: the restored disk is uncompressed)
 *   `qemu-img convert` copies it and the snapshot is hashed (its pages cached by the convert's read).
 * - The hash runs after the copy, beside the fsync: hashing during a cold copy made both read the
 *   disk and was slower (docs/benchmarks.md, *3*).
 * - The hash's verdict wins: a mismatch is `verification_failed` whatever else failed, and a failed
 *   copy is `verification_failed` when the snapshot no longer matches its manifest, `copy_failed`
 *   (retryable) only when it does.
 * Resolves only when everything succeeded; settles only when nothing of it is still running.
 */
export async function copyThenVerify(
  tools: Toolbox,
  server: ServerRef,
  dom: string,
  files: SnapshotFiles,
  manifest: SnapshotManifest,
  restoring: string,
  plainCopy: boolean,
  signal: AbortSignal | undefined,
  onPct: (pct: number) => void,
): Promise<void> {
  try {
    if (plainCopy) {
      await byteCopy(tools, files.final, restoring, {
        signal,
        virtualSize: manifest.virtualSize,
        bytes: manifest.bytes,
        onPct: scaled(onPct, 0, 85),
      });
    } else {
      await convert(tools, files.final, restoring, {
        compress: false,
        signal,
        virtualSize: manifest.virtualSize,
        onPct: scaled(onPct, 0, 85),
      });
    }
  } catch (e) {
    throwIfAborted(signal);
    // A damaged snapshot that breaks the copy is refused as such, not retried as a copy failure.
    await requireManifestHash(tools, files.final, manifest, signal, () => undefined);
    throw e;
  }
  const { controller, dispose } = childController(signal);
  try {
    const verified = requireManifestHash(
      tools,
      plainCopy ? restoring : files.final,
      manifest,
      controller.signal,
      scaled(onPct, 85, 100),
    ).catch((e: unknown) => {
      controller.abort();
      throw e;
    });
    const rest = together(controller.signal, [
      (s) => tools.qemuImg.verify(restoring, manifest.virtualSize, s, 'copy_failed'),
      async () => {
        await copyOwnership(server.diskPath, restoring);
        await fsyncFile(restoring);
      },
      async () => requireShutOffState(dom, await tools.virsh.domState(dom)),
    ] as const);
    const [v, r] = await Promise.allSettled([verified, rest]);
    if (v.status === 'rejected') throw v.reason;
    if (r.status === 'rejected') throw r.reason;
  } finally {
    dispose();
  }
}

/** sha256 and length of `file` against the manifest; a mismatch is `verification_failed`. */
export async function requireManifestHash(
  tools: Toolbox,
  file: string,
  manifest: SnapshotManifest,
  signal: AbortSignal | undefined,
  onPct: (pct: number) => void,
): Promise<void> {
  const h = await hashFile(tools, file, manifest.bytes, signal, onPct);
  if (h.sha256 !== manifest.sha256 || h.bytes !== manifest.bytes) {
    throw hvError('verification_failed', `sha256 of ${file} does not match the snapshot's manifest`);
  }
}

export async function hashFile(
  tools: Toolbox,
  file: string,
  expectedBytes: number,
  signal: AbortSignal | undefined,
  onPct: (pct: number) => void,
): Promise<{ sha256: string; bytes: number }> {
  return tools.hasher.sha256(file, {
    signal,
    onBytes: (n) => onPct(expectedBytes > 0 ? (n / expectedBytes) * 100 : 100),
  });
}

export async function copyOwnership(from: string, to: string): Promise<void> {
  try {
    const st = await fsp.stat(from);
    await fsp.chown(to, st.uid, st.gid);
    await fsp.chmod(to, st.mode & 0o7777);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}
