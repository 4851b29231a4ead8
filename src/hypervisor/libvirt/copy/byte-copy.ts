import { promises as fsp } from 'node:fs';

import { hvError } from '../../driver-errors';
import { classifyToolFailure, stepError } from '../errors';
import { fileSize } from '../files';
import { RunResult } from '../process-runner';
import { Toolbox } from '../tools/toolbox';

/**
 * Runs `body` while a read-only `qemu-io` holds qemu's image lock on the shut-off disk `source` — the
 * lock `qemu-img convert` would take: no domain can start on the disk and no qemu-img can write it
 * until `body` has settled, and a disk some qemu has open for writing is refused
 * (`invalid_power_state`). Under the lock the disk is looked at again; when it is no longer plain
 * (see `ImageInfo.plain`) or its virtual size changed, `body` does not run and this resolves null:
 * the caller converts instead. `body` gets the disk file's length, fixed while the lock is held. A
 * lock that ended before `body` did (its holder killed: a writer could have opened the disk) is
 * `copy_failed`, whatever `body` returned.
 */
export async function underImageLock<T>(
  tools: Toolbox,
  source: string,
  o: { signal?: AbortSignal; virtualSize: number },
  body: (length: number) => Promise<T>,
): Promise<T | null> {
  const timeoutMs = tools.copyTimeoutMs(o.virtualSize) + tools.commandTimeoutMs;
  const lock = await tools.qemuIo.holdImageLock(source, timeoutMs, o.signal, 'copy_failed');
  try {
    // Looked at again under the lock: nothing can change the disk from here on.
    const now = await tools.qemuImg.info(source, true);
    if (!now.plain || now.virtualSize !== o.virtualSize) return null;
    const result = await body((await fileSize(source)) ?? now.actualSize);
    if (!(await lock.stillHeld())) {
      throw hvError('copy_failed', `the image lock on ${source} ended before its copy did`);
    }
    return result;
  } finally {
    await lock.release();
  }
}

/**
 * Copies `source` to `dest` byte for byte with GNU `cp` (argument array, no shell): holes kept and
 * zero runs made holes (`--sparse=always`), a reflink where the file system offers one (cp's
 * default). Progress is the target's length against `bytes`, polled. A copy of a plain qcow2 image
 * is the same disk (the format is position-independent); the copy may carry the source's leaked
 * clusters (harmless).
 */
export async function byteCopy(
  tools: Toolbox,
  source: string,
  dest: string,
  o: { signal?: AbortSignal; virtualSize: number; bytes: number; onPct: (pct: number) => void },
): Promise<void> {
  const args = ['--sparse=always', '--no-target-directory', '--', source, dest];
  const poll = setInterval(() => {
    fsp.stat(dest).then(
      (st) => o.onPct(o.bytes > 0 ? (st.size / o.bytes) * 100 : 0),
      () => undefined,
    );
  }, tools.pollIntervalMs);
  let r: RunResult;
  try {
    r = await tools.runner.run(tools.cpPath, args, {
      timeoutMs: tools.copyTimeoutMs(o.virtualSize),
      signal: o.signal,
      env: { LC_ALL: 'C' },
    });
  } catch (e) {
    throw stepError(e, 'copy_failed', 'cp');
  } finally {
    clearInterval(poll);
  }
  if (r.code !== 0) throw classifyToolFailure(tools.cpPath, args, r, 'copy_failed');
  o.onPct(100);
}
