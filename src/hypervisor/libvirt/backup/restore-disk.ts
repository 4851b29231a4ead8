import { promises as fsp } from 'node:fs';

import { cancelled, hvError, scaled, throwIfAborted, toHypervisorError } from '../../driver-errors';
import { DiskImageWriter, HypervisorError, ServerRef } from '../../hypervisor-driver';
import { DISK_SIDE_FILE_SUFFIXES } from '../../host-paths';
import { convert } from '../copy/convert';
import { DiskSwap } from '../disk-swap';
import { fsyncFile, removeQuietly } from '../files';
import { copyOwnership, requireShutOffState } from '../restore-copy';
import { Toolbox } from '../tools/toolbox';

/**
 * A chunk is written into the raw file this much at a time (the piece `writeFile` uses): whole 4 MiB
 * `pwrite`s took more of the kernel's CPU per byte, and erratically so (docs/benchmarks.md *6*,
 * "Chunk buffers reused").
 */
const WRITE_PIECE_BYTES = 512 * 1024;

/**
 * A disk rebuilt from a backup: `fill` writes into a sparse raw file next to the disk (plain
 * `pwrite`s, holes stay holes), which `qemu-img convert` then turns into the qcow2 `<disk>.restoring`
 * (zeros left out), checked, given the disk's owner and mode, and swapped in as a snapshot restore is
 * (DiskSwap). The raw file costs space for the written data once more until the convert is done; a
 * qemu-io process per write would cost a process start per chunk instead (see docs/backups.md).
 * A rejection of `fill` passes through unchanged; the disk is untouched on any failure.
 */
export async function rebuildDisk(
  tools: Toolbox,
  swap: DiskSwap,
  server: ServerRef,
  dom: string,
  size: number,
  fill: (disk: DiskImageWriter) => Promise<void>,
  report: (pct: number) => void,
  signal: AbortSignal | undefined,
): Promise<void> {
  if (!Number.isSafeInteger(size) || size <= 0 || size % 512 !== 0) {
    throw new HypervisorError('hypervisor_error', `bad virtual size ${size}`, { retryable: false });
  }
  const raw = `${server.diskPath}${DISK_SIDE_FILE_SUFFIXES.rebuilding}`;
  const restoring = DiskSwap.restoringFile(server);
  await removeQuietly(raw, restoring);
  report(0);
  let fillFailed = false;
  let written = 0;
  try {
    const fh = await fsp.open(raw, 'wx', 0o600);
    try {
      await fh.truncate(size);
      try {
        await fill({
          async write(offset: number, data: Buffer): Promise<void> {
            throwIfAborted(signal);
            if (!Number.isSafeInteger(offset) || offset < 0 || offset + data.length > size) {
              throw hvError('hypervisor_error', `write ${offset}+${data.length} outside the disk (${size})`);
            }
            for (let from = 0; from < data.length; from += WRITE_PIECE_BYTES) {
              const length = Math.min(WRITE_PIECE_BYTES, data.length - from);
              const { bytesWritten } = await fh.write(data, from, length, offset + from);
              if (bytesWritten !== length) throw hvError('copy_failed', `short write at ${offset + from}`);
            }
            written += data.length;
            report(Math.min(50, (written / size) * 50)); // holes are never written: a lower bound
          },
        });
      } catch (e) {
        fillFailed = !signal?.aborted;
        throw e;
      }
    } finally {
      await fh.close();
    }
    throwIfAborted(signal);
    report(50);
    await convert(tools, raw, restoring, {
      compress: false,
      signal,
      virtualSize: size,
      onPct: scaled(report, 50, 90),
      sourceFormat: 'raw',
    });
    await removeQuietly(raw);
    await tools.qemuImg.verify(restoring, size, signal, 'copy_failed');
    await copyOwnership(server.diskPath, restoring);
    await fsyncFile(restoring);
    requireShutOffState(dom, await tools.virsh.domState(dom));
    await swap.swapIn(server, dom, signal);
    report(100);
  } catch (e) {
    await removeQuietly(raw, restoring);
    if (fillFailed) throw e;
    if (signal?.aborted) throw cancelled(`aborted by caller (${String(e)})`);
    throw toHypervisorError(e, 'copy_failed', 'rebuild disk');
  }
}
