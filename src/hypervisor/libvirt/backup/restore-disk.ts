import { cancelled, throwIfAborted, toHypervisorError } from '../../driver-errors';
import { DiskImageWriter, ServerRef } from '../../hypervisor-driver';
import { DISK_SIDE_FILE_SUFFIXES } from '../../host-paths';
import { DiskSwap } from '../disk-swap';
import { fsyncFile, removeQuietly } from '../files';
import { copyOwnership, requireShutOffState } from '../restore-copy';
import { Toolbox } from '../tools/toolbox';
import { Qcow2ImageWriter } from './qcow2-image-writer';

/**
 * A disk rebuilt from a backup: `fill` writes the data into a fresh qcow2 `<disk>.restoring` of the
 * disk's size that this process writes itself (Qcow2ImageWriter: data clusters in place, with O_DIRECT
 * where the file system has it; holes are never written, so they stay unallocated), then the image is
 * finished, checked by `qemu-img check`, given the disk's owner and mode, synced, and swapped in as a
 * snapshot restore is (DiskSwap). A rejection of `fill` passes through unchanged; the disk is untouched
 * on any failure.
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
  const restoring = DiskSwap.restoringFile(server);
  // Earlier versions rebuilt into a raw file next to the disk: a crash may have left one.
  const legacyRaw = `${server.diskPath}${DISK_SIDE_FILE_SUFFIXES.rebuilding}`;
  await removeQuietly(legacyRaw, restoring);
  report(0);
  let fillFailed = false;
  let written = 0;
  let image: Qcow2ImageWriter | null = null;
  try {
    image = await Qcow2ImageWriter.create(restoring, size);
    const writer = image;
    try {
      await fill({
        async write(offset: number, data: Buffer): Promise<void> {
          throwIfAborted(signal);
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
    await writer.finish();
    report(90);
    await tools.qemuImg.verify(restoring, size, signal, 'copy_failed');
    await copyOwnership(server.diskPath, restoring);
    await fsyncFile(restoring);
    requireShutOffState(dom, await tools.virsh.domState(dom));
    await swap.swapIn(server, dom, signal);
    report(100);
  } catch (e) {
    await image?.abandon().catch(() => undefined);
    await removeQuietly(restoring);
    if (fillFailed) throw e;
    if (signal?.aborted) throw cancelled(`aborted by caller (${String(e)})`);
    throw toHypervisorError(e, 'copy_failed', 'rebuild disk');
  }
}
