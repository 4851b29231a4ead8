import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

import { throwIfAborted } from '../driver-errors';
import { ServerRef } from '../hypervisor-driver';
import { DISK_SIDE_FILE_SUFFIXES } from '../host-paths';
import { dropShutOffCheckpointsExcept } from './backup/checkpoints';
import { fsyncDir, linkIfExists, removeIfExists, removeQuietly } from './files';
import { Toolbox } from './tools/toolbox';

/**
 * The last step of every restore (of a snapshot, or of a disk rebuilt from a backup): the new disk,
 * complete and verified in `<disk>.restoring`, renamed over the disk — only when no qemu holds the
 * disk — and the old disk's checkpoints dropped with it. Owns the unlinks of replaced disks that run
 * after the restore has returned.
 */
export class DiskSwap {
  /** Unlinks still running after the call that started them returned (the replaced disks). */
  private readonly removals = new Map<string, Promise<void>>();

  constructor(private readonly tools: Toolbox) {}

  /** `<disk>.restoring`: where a restore builds the new disk. */
  static restoringFile(server: ServerRef): string {
    return `${server.diskPath}${DISK_SIDE_FILE_SUFFIXES.restoring}`;
  }

  /** Renames `<disk>.restoring` over the disk; on failure removes it (and the old disk's second name). */
  async swapIn(server: ServerRef, dom: string, signal: AbortSignal | undefined): Promise<void> {
    const restoring = DiskSwap.restoringFile(server);
    const replaced = `${server.diskPath}${DISK_SIDE_FILE_SUFFIXES.replaced}`;
    try {
      // Renaming over the disk of a running VM "succeeds" and silently loses the restore: domstate was
      // looked at again after the copy; now let qemu-img try to take the disk's write lock, which
      // fails while any qemu has it open.
      throwIfAborted(signal);
      await this.tools.qemuImg.requireNotInUse(server.diskPath);
      throwIfAborted(signal);
      // The old disk keeps a second name across the rename, so the rename does not free its blocks:
      // freeing them is the unlink of the last name, which took 0.37-0.39 s for an 871 MiB disk on
      // these hosts (ext4 mounted with online discard) — a quarter of the restore. That unlink runs
      // after the restore has returned (removeLater); a crash before it leaves `<disk>.replaced`,
      // which cleanupInterrupted removes.
      await this.removals.get(replaced);
      await removeIfExists(replaced);
      await linkIfExists(server.diskPath, replaced);
      await fsp.rename(restoring, server.diskPath);
    } catch (e) {
      await removeQuietly(restoring, replaced);
      throw e;
    }
    // The disk is replaced from here on; a failing directory fsync cannot undo that, so it is not
    // reported as a failed restore.
    await fsyncDir(path.dirname(server.diskPath)).catch(() => undefined);
    this.removeLater(replaced);
    // The new disk has none of the old one's bitmaps: libvirt's records of them go too, so the next
    // backup reads the whole disk (checkpoint_missing) instead of trusting a base that is gone. The
    // domain is shut off (every caller looked after its copy, and qemu-img just took the disk's write
    // lock): asking libvirt again cost a restore 70-180 ms here. Were it started meanwhile, the bitmap
    // removal fails on qemu's lock and the records stay: what the live clean-up would have left.
    await dropShutOffCheckpointsExcept(this.tools, server, dom, null).catch(() => undefined);
  }

  /** Resolves when the unlinks started by earlier swaps are done. */
  async idle(): Promise<void> {
    while (this.removals.size > 0) await Promise.all(this.removals.values());
  }

  /** Unlinks `file` without waiting for it (never rejects); `idle()` waits for it. */
  private removeLater(file: string): void {
    const done = removeQuietly(file).finally(() => {
      if (this.removals.get(file) === done) this.removals.delete(file);
    });
    this.removals.set(file, done);
  }
}
