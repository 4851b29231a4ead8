import { promises as fsp } from 'node:fs';

import { hvError } from '../../driver-errors';
import { classifyToolFailure, stepError } from '../errors';
import { fileSize } from '../files';
import { RunResult } from '../process-runner';
import { Toolbox } from '../tools/toolbox';

/**
 * Copies `source` to `dest` byte for byte with GNU `cp` (argument array, no shell): holes kept and
 * zero runs made holes (`--sparse=always`), a reflink where the file system offers one (cp's
 * default). Progress is the target's length against `bytes`, polled.
 *
 * With `underImageLock` (a shut-off server's disk), a read-only `qemu-io` holds qemu's image lock on
 * `source` for the whole copy — the lock `qemu-img convert` would take: no domain can start on the
 * disk and no qemu-img can write it until the copy is done, and a disk some qemu has open for writing
 * is refused (`invalid_power_state`). Under the lock the disk is looked at again; when it is no
 * longer plain (see `ImageInfo.plain`) or its size changed, nothing is copied and this resolves
 * false: the caller converts instead. The copy may carry the disk's leaked clusters (harmless).
 */
export async function byteCopy(
  tools: Toolbox,
  source: string,
  dest: string,
  o: {
    signal?: AbortSignal;
    virtualSize: number;
    bytes: number;
    onPct: (pct: number) => void;
    underImageLock?: boolean;
  },
): Promise<boolean> {
  if (!o.underImageLock) {
    await cp(tools, source, dest, o);
    return true;
  }
  const timeoutMs = tools.copyTimeoutMs(o.virtualSize) + tools.commandTimeoutMs;
  const lock = await tools.qemuIo.holdImageLock(source, timeoutMs, o.signal);
  try {
    // Looked at again under the lock: nothing can change the disk from here on.
    const now = await tools.qemuImg.info(source, true);
    if (!now.plain || now.virtualSize !== o.virtualSize) return false;
    const length = (await fileSize(source)) ?? now.actualSize;
    await cp(tools, source, dest, { ...o, bytes: length });
    if (!(await lock.stillHeld())) {
      throw hvError('copy_failed', `the image lock on ${source} ended before its copy did`);
    }
    return true;
  } finally {
    await lock.release();
  }
}

async function cp(
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
