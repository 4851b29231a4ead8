import { constants as fsConstants, promises as fsp } from 'node:fs';

import { cancelled, hvError, throwIfAborted, toHypervisorError } from '../../driver-errors';
import { DiskImageWriter, HypervisorError, ServerRef } from '../../hypervisor-driver';
import { DISK_SIDE_FILE_SUFFIXES } from '../../host-paths';
import { DiskSwap } from '../disk-swap';
import { fsyncFile, removeQuietly } from '../files';
import { copyOwnership, requireShutOffState } from '../restore-copy';
import { NbdWriter } from '../tools/nbd-writer';
import { WritableExport } from '../tools/qemu-nbd';
import { Toolbox } from '../tools/toolbox';

/** How long the one qemu-nbd of a rebuild may serve (a whole restore's writes go through it). */
const REBUILD_SERVE_TIMEOUT_MS = 24 * 60 * 60_000;

/**
 * A disk rebuilt from a backup: a fresh qcow2 `<disk>.restoring` of the disk's size is created and
 * served by one qemu-nbd, `fill` writes the data through it (NbdWriter; holes are never written, so
 * they stay unallocated), then the image is flushed, checked, given the disk's owner and mode, and
 * swapped in as a snapshot restore is (DiskSwap). qemu writes the qcow2 itself, so the data is written
 * once, where a raw file converted afterwards wrote it twice and read it back once (docs/benchmarks.md
 * *6*); with O_DIRECT (`--cache=none`, where the file system has it) it goes to the disk as it comes,
 * not into the page cache to be flushed at the end. A rejection of `fill` passes through unchanged;
 * the disk is untouched on any failure.
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
  const restoring = DiskSwap.restoringFile(server);
  // An earlier version rebuilt into a raw file next to the disk: a crash may have left one.
  const legacyRaw = `${server.diskPath}${DISK_SIDE_FILE_SUFFIXES.rebuilding}`;
  await removeQuietly(legacyRaw, restoring);
  report(0);
  let fillFailed = false;
  let written = 0;
  const held: { served: WritableExport | null; writer: NbdWriter | null } = { served: null, writer: null };
  try {
    await tools.qemuImg.run(['create', '-q', '-f', 'qcow2', restoring, String(size)], 'copy_failed', signal);
    // The customer's data goes in next: nobody else reads it before it gets the disk's owner and mode.
    await fsp.chmod(restoring, 0o600);
    const direct = await supportsDirectIo(restoring);
    const served = await tools.qemuNbd.serveForWriting(
      restoring,
      { direct, timeoutMs: REBUILD_SERVE_TIMEOUT_MS },
      signal,
    );
    held.served = served;
    const writer = await NbdWriter.connect(served.socket);
    held.writer = writer;
    if (writer.sizeBytes !== size) {
      throw hvError('copy_failed', `the served image is ${writer.sizeBytes} bytes, not ${size}`);
    }
    try {
      await fill({
        async write(offset: number, data: Buffer): Promise<void> {
          throwIfAborted(signal);
          if (!Number.isSafeInteger(offset) || offset < 0 || offset + data.length > size) {
            throw hvError('hypervisor_error', `write ${offset}+${data.length} outside the disk (${size})`);
          }
          await writer.write(offset, data);
          written += data.length;
          report(Math.min(90, (written / size) * 90)); // holes are never written: a lower bound
        },
      });
    } catch (e) {
      fillFailed = !signal?.aborted;
      throw e;
    }
    throwIfAborted(signal);
    await writer.flush();
    await writer.disconnect();
    held.writer = null;
    await served.finished();
    held.served = null;
    report(90);
    await tools.qemuImg.verify(restoring, size, signal, 'copy_failed');
    await copyOwnership(server.diskPath, restoring);
    await fsyncFile(restoring);
    requireShutOffState(dom, await tools.virsh.domState(dom));
    await swap.swapIn(server, dom, signal);
    report(100);
  } catch (e) {
    held.writer?.destroy();
    await held.served?.release();
    await removeQuietly(restoring);
    if (fillFailed) throw e;
    if (signal?.aborted) throw cancelled(`aborted by caller (${String(e)})`);
    throw toHypervisorError(e, 'copy_failed', 'rebuild disk');
  }
}

/** Whether `file`'s file system takes O_DIRECT (tmpfs, for one, refuses it with EINVAL). */
async function supportsDirectIo(file: string): Promise<boolean> {
  try {
    const fh = await fsp.open(file, fsConstants.O_RDONLY | fsConstants.O_DIRECT);
    await fh.close();
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EINVAL') return false;
    throw e;
  }
}
