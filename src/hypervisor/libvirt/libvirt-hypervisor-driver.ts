import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import {
  BackupReadOptions,
  BackupReadSession,
  CreateSnapshotResult,
  DiskImageWriter,
  DriverCapabilities,
  HypervisorDriver,
  HypervisorError,
  OperationOptions,
  ObservedPowerState,
  PowerState,
  RestoreDiskOptions,
  ServerRef,
  SnapshotConsistency,
  SnapshotRef,
} from '../hypervisor-driver';
import { hvError, progressGuard, scaled, throwIfAborted } from '../driver-errors';
import { libvirtUriProblem } from './connection-uri';
import { stepError } from './errors';
import { freeBytes, fsyncDir, isFile, removeIfExists, removeQuietly, writeFileDurably } from './files';
import { convert } from './copy/convert';
import { pushBackup } from './copy/push-backup';
import { Toolbox, ToolboxOptions } from './tools/toolbox';
import { requireDiskInRoots } from './disk-roots';
import {
  domainOf,
  findDomainUuid,
  observePowerStates,
  powerOffDomain,
  shutdownDomain,
  startDomain,
  stopDomain,
} from './domain-power';
import { copyThenVerify, requireShutOffState } from './restore-copy';
import { copyShutOffDisk, verifyCopy, VerifiedCopy } from './create-copy';
import { DiskSwap } from './disk-swap';
import { removeInterruptedLeftovers } from './leftovers';
import { openBackupRead } from './backup/open-read';
import { rebuildDisk } from './backup/restore-disk';
import { readSnapshotManifest, refuseExisting, removeLeftovers, snapshotFiles } from './snapshot-files';
import { Semaphore } from '../../common/semaphore';
import { allInOrder } from './together';
import { MANIFEST_KIND, MANIFEST_VERSION, serializeManifest, SnapshotManifest } from './snapshot-manifest';

export interface LibvirtDriverOptions extends ToolboxOptions {
  /** libvirt connection URI, e.g. `qemu:///system` (one of the forms of `connection-uri.ts`). */
  readonly uri: string;
  /**
   * The node's image roots: the directories its disks may live in. A create or restore whose disk is
   * not inside one of them — as written, and as the file system resolves it (symbolic links) — is
   * refused before the disk is touched.
   */
  readonly imageRoots: readonly string[];
  /** Disk copies (snapshot create / restore) allowed at once on this host. Default 2. */
  readonly maxConcurrentCopies?: number;
  /** Store snapshots zstd-compressed (`qemu-img convert -c -o compression_type=zstd`). Default none. */
  readonly compression?: 'none' | 'zstd';
  /** Grace period for `stop` when the caller passes no usable `graceSeconds`. Default 60. */
  readonly stopGraceSeconds?: number;
}

/** Extra space demanded beyond `qemu-img measure`'s requirement (metadata, manifest, rounding). */
const SPACE_MARGIN_BYTES = 8 * 1024 * 1024;

export class LibvirtHypervisorDriver implements HypervisorDriver {
  readonly name = 'libvirt';
  readonly capabilities: DriverCapabilities = { liveSnapshot: true, quiesce: true };

  private readonly imageRoots: readonly string[];
  private readonly tools: Toolbox;
  private readonly compression: 'none' | 'zstd';
  private readonly stopGraceSeconds: number;
  private readonly copies: Semaphore;
  private readonly swap: DiskSwap;

  constructor(options: LibvirtDriverOptions) {
    const uriProblem = libvirtUriProblem(options.uri ?? '');
    if (uriProblem) throw new Error(`LibvirtHypervisorDriver: ${uriProblem}, got "${options.uri}"`);
    if (!options.imageRoots?.length) throw new Error('LibvirtHypervisorDriver: imageRoots is required');
    this.imageRoots = [...options.imageRoots];
    this.tools = new Toolbox(options);
    this.swap = new DiskSwap(this.tools);
    this.compression = options.compression ?? 'none';
    this.stopGraceSeconds = options.stopGraceSeconds ?? 60;
    this.copies = new Semaphore(options.maxConcurrentCopies ?? 2);
  }

  // ------------------------------------------------------------------------------------------------
  // Power
  // ------------------------------------------------------------------------------------------------

  async findDomainUuid(name: string): Promise<string> {
    return findDomainUuid(this.tools, name);
  }

  async getPowerState(server: ServerRef): Promise<PowerState> {
    return (await domainOf(this.tools, server)).state === 'shut off' ? 'stopped' : 'running';
  }

  async observePowerStates(servers: readonly ServerRef[]): Promise<ObservedPowerState[]> {
    return observePowerStates(this.tools, servers);
  }

  async start(server: ServerRef): Promise<void> {
    return startDomain(this.tools, server);
  }

  async stop(server: ServerRef, opts: { graceSeconds: number }): Promise<{ forced: boolean }> {
    const grace = opts?.graceSeconds;
    const usable = typeof grace === 'number' && Number.isFinite(grace) && grace >= 0;
    return stopDomain(this.tools, server, usable ? grace : this.stopGraceSeconds);
  }

  async powerOff(server: ServerRef): Promise<void> {
    return powerOffDomain(this.tools, server);
  }

  async shutdown(server: ServerRef, opts: { graceSeconds: number; signal?: AbortSignal }): Promise<void> {
    return shutdownDomain(this.tools, server, opts.graceSeconds, opts.signal);
  }

  // ------------------------------------------------------------------------------------------------
  // Snapshots
  // ------------------------------------------------------------------------------------------------

  async createSnapshot(
    server: ServerRef,
    snap: SnapshotRef,
    onProgress: (pct: number) => void,
    opts: OperationOptions = {},
  ): Promise<CreateSnapshotResult> {
    const files = snapshotFiles(snap);
    const signal = opts.signal;
    const report = progressGuard(onProgress);
    throwIfAborted(signal);

    // Nothing reads the disk before it is known to lie inside the node's image roots.
    await requireDiskInRoots(server.diskPath, this.imageRoots);
    // Read-only look-ups, at once; their errors in this order (an unknown domain first).
    const [{ uuid: dom, state }, , src, measured] = await allInOrder([
      domainOf(this.tools, server),
      refuseExisting(files),
      this.tools.qemuImg.info(server.diskPath, true),
      this.tools.qemuImg.measure(server.diskPath, signal),
    ] as const);
    const { release, waited } = await this.acquireCopySlotNoting(signal);
    try {
      await refuseExisting(files); // it may have appeared while this call waited for a copy slot
    } catch (e) {
      release();
      throw e;
    }
    let renamed = false;
    try {
      // qemu (user libvirt-qemu) must be able to reach a live backup's target: traverse-only for others.
      await fsp.mkdir(snap.snapshotDir, { recursive: true, mode: 0o711 });
      await removeLeftovers(files);
      report(0);
      // A zstd live copy holds the uncompressed backup and the compressed copy at once.
      const twoPass = state !== 'shut off' && this.compression === 'zstd';
      // A byte copy of a plain disk (see copyShutOffDisk) is as large as the disk file, which can
      // exceed what a convert would write (clusters the guest freed are still in the file).
      const plainCopy = state === 'shut off' && this.compression === 'none' && src.plain;
      const measuredNow = waited ? await this.tools.qemuImg.measure(server.diskPath, signal) : measured;
      const required = plainCopy ? Math.max(measuredNow, src.actualSize) : measuredNow;
      await this.requireSpace(snap.snapshotDir, required, twoPass ? 2 : 1);

      let consistency: SnapshotConsistency;
      let copy: VerifiedCopy;
      if (state === 'shut off') {
        copy = await copyShutOffDisk(this.tools, server.diskPath, files.partial, {
          plain: plainCopy,
          compress: this.compression === 'zstd',
          signal,
          virtualSize: src.virtualSize,
          onPct: report,
        });
        consistency = 'stopped';
      } else {
        const target = twoPass ? files.stage : files.partial;
        consistency = await pushBackup(
          this.tools,

          server,
          dom,
          target,
          src.virtualSize,
          signal,
          scaled(report, 0, twoPass ? 45 : 90),
        );
        if (twoPass) {
          await convert(this.tools, files.stage, files.partial, {
            compress: true,
            signal,
            virtualSize: src.virtualSize,
            onPct: scaled(report, 45, 90),
          });
          await removeIfExists(files.stage);
        }
        throwIfAborted(signal);
        copy = await verifyCopy(this.tools, files.partial, src.virtualSize, signal, scaled(report, 90, 99));
      }
      const manifest: SnapshotManifest = {
        kind: MANIFEST_KIND,
        version: MANIFEST_VERSION,
        snapshotId: snap.id,
        file: path.basename(files.final),
        bytes: copy.bytes,
        sha256: copy.sha256,
        imageFormat: 'qcow2',
        compression: this.compression,
        virtualSize: src.virtualSize,
        consistency,
        createdAt: new Date().toISOString(),
      };
      throwIfAborted(signal);
      await writeFileDurably(files.manifest, serializeManifest(manifest));
      throwIfAborted(signal); // the last moment an abort can still win: before the commit
      // Commit point: the rename, made durable by the directory fsync (a failure of either undoes it).
      await fsp.rename(files.partial, files.final);
      renamed = true;
      await fsyncDir(snap.snapshotDir);
      report(100);
      return { sizeBytes: copy.actualSize, consistency };
    } catch (e) {
      if (renamed) await removeQuietly(files.final);
      await removeQuietly(files.partial, files.stage, files.manifestTmp, files.manifest);
      throw await this.finalError(e, signal, 'copy_failed', snap.snapshotDir);
    } finally {
      release();
    }
  }

  async restoreSnapshot(
    server: ServerRef,
    snap: SnapshotRef,
    onProgress: (pct: number) => void,
    opts: OperationOptions = {},
  ): Promise<void> {
    const files = snapshotFiles(snap);
    const signal = opts.signal;
    const report = progressGuard(onProgress);
    const restoring = DiskSwap.restoringFile(server);
    throwIfAborted(signal);

    // Nothing is written next to the disk before it is known to lie inside the node's image roots.
    await requireDiskInRoots(server.diskPath, this.imageRoots);
    // Read-only look-ups, at once; their errors in this order (a domain that is not shut off first,
    // then a missing snapshot, a manifest that does not describe it, a damaged image, the space).
    const [dom, { manifest, measured, plainCopy }] = await allInOrder([
      domainOf(this.tools, server).then(({ uuid, state }) => {
        requireShutOffState(uuid, state);
        return uuid;
      }),
      (async () => {
        const present = await isFile(files.final).catch((e: unknown) => {
          throw stepError(e, 'hypervisor_error', 'stat snapshot');
        });
        // Present without its manifest: not ours to trust; readSnapshotManifest refuses it.
        if (!present) throw hvError('snapshot_not_found', `no snapshot file ${files.final}`);
        const m = await readSnapshotManifest(snap, files);
        const [check, required] = await allInOrder([
          this.tools.qemuImg.verify(files.final, m.virtualSize, signal, 'verification_failed', true),
          this.tools.qemuImg.measure(files.final, signal),
        ] as const);
        // A byte copy of the snapshot is a valid disk only when the snapshot stands alone and is
        // clean; a compressed one is decompressed by qemu-img convert instead.
        const plainCopy =
          m.compression === 'none' && check.standalone && check.compressedClusters === 0 && !check.leaks;
        return { manifest: m, measured: required, plainCopy };
      })(),
    ] as const);
    const { release, waited } = await this.acquireCopySlotNoting(signal);
    try {
      await removeIfExists(restoring);
      report(0);
      const required = waited ? await this.tools.qemuImg.measure(files.final, signal) : measured;
      await this.requireSpace(path.dirname(server.diskPath), required, 1);

      await copyThenVerify(
        this.tools,
        server,
        dom,
        files,
        manifest,
        restoring,
        plainCopy,
        signal,
        scaled(report, 0, 95),
      );

      await this.swap.swapIn(server, dom, signal);
      report(100);
    } catch (e) {
      await removeQuietly(restoring);
      throw await this.finalError(e, signal, 'copy_failed', path.dirname(server.diskPath));
    } finally {
      release();
    }
  }

  async deleteSnapshot(_server: ServerRef, snap: SnapshotRef): Promise<void> {
    const files = snapshotFiles(snap);
    try {
      // The snapshot file first: while it exists its manifest must exist too.
      for (const f of [files.final, files.partial, files.stage, files.manifest, files.manifestTmp]) {
        await removeIfExists(f);
      }
      await fsyncDir(snap.snapshotDir).catch(() => undefined);
    } catch (e) {
      throw stepError(e, 'hypervisor_error', 'delete snapshot');
    }
  }

  async snapshotExists(snap: SnapshotRef): Promise<boolean> {
    const files = snapshotFiles(snap);
    try {
      return (await isFile(files.final)) && (await isFile(files.manifest));
    } catch (e) {
      throw stepError(e, 'hypervisor_error', 'snapshot exists');
    }
  }

  async cleanupInterrupted(
    snapshotDir: string,
    diskPaths: readonly string[],
  ): Promise<{ partialSnapshotIds: number[] }> {
    return removeInterruptedLeftovers(snapshotDir, diskPaths, this.imageRoots);
  }

  // ------------------------------------------------------------------------------------------------
  // Backups (backup/)
  // ------------------------------------------------------------------------------------------------

  async openBackupRead(server: ServerRef, opts: BackupReadOptions): Promise<BackupReadSession> {
    throwIfAborted(opts.signal);
    await requireDiskInRoots(server.diskPath, this.imageRoots);
    return openBackupRead(this.tools, server, opts, (bytes) =>
      this.requireSpace(path.dirname(server.diskPath), bytes, 1),
    );
  }

  async restoreDiskFrom(
    server: ServerRef,
    virtualSizeBytes: number,
    fill: (disk: DiskImageWriter) => Promise<void>,
    onProgress: (pct: number) => void,
    opts: RestoreDiskOptions = {},
  ): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    await requireDiskInRoots(server.diskPath, this.imageRoots);
    const { uuid: dom, state } = await domainOf(this.tools, server);
    requireShutOffState(dom, state);
    const release = await this.acquireCopySlot(signal);
    try {
      // The rebuilt qcow2 sits next to the disk until it replaces it.
      await this.requireSpace(path.dirname(server.diskPath), opts.dataBytes ?? virtualSizeBytes, 1);
      await rebuildDisk(
        this.tools,
        this.swap,
        server,
        dom,
        virtualSizeBytes,
        fill,
        progressGuard(onProgress),
        signal,
      );
    } finally {
      release();
    }
  }

  // ------------------------------------------------------------------------------------------------
  // Copies and checks
  // ------------------------------------------------------------------------------------------------

  /** Fails with insufficient_storage, before anything is written, when `dir` cannot hold the copy. */
  private async requireSpace(dir: string, required: number, copies: number): Promise<void> {
    const need = required * copies + SPACE_MARGIN_BYTES;
    let free: number;
    try {
      free = await freeBytes(dir);
    } catch (e) {
      throw stepError(e, 'hypervisor_error', `statfs ${dir}`);
    }
    if (free < need) {
      throw hvError(
        'insufficient_storage',
        `need ${need} bytes in ${dir} (${copies} × ${required} and a margin), ${free} free`,
      );
    }
  }

  /** A copy slot; `waited` says whether another copy held it first (what was measured may be stale). */
  private async acquireCopySlotNoting(
    signal?: AbortSignal,
  ): Promise<{ release: () => void; waited: boolean }> {
    const waited = this.copies.inUse >= this.copies.capacity;
    return { release: await this.acquireCopySlot(signal), waited };
  }

  // ------------------------------------------------------------------------------------------------
  // Helpers
  // ------------------------------------------------------------------------------------------------

  /** Resolves when the unlinks started by earlier calls (the disks that restores replaced) are done. */
  async idle(): Promise<void> {
    await this.swap.idle();
  }

  private async acquireCopySlot(signal?: AbortSignal): Promise<() => void> {
    try {
      return await this.copies.acquire(signal);
    } catch (e) {
      throw stepError(e, 'cancelled');
    }
  }

  /** The error a failed create/restore rejects with: cancellation wins; ENOSPC-like failures are storage. */
  private async finalError(
    e: unknown,
    signal: AbortSignal | undefined,
    fallback: 'copy_failed',
    dir: string,
  ): Promise<HypervisorError> {
    const err = stepError(e, fallback);
    if (signal?.aborted && err.code !== 'cancelled')
      return hvError('cancelled', `aborted by caller; ${err.detail ?? ''}`);
    if (err.code === 'copy_failed') {
      // A copy that died with an unclear message on a full file system ran out of space.
      const free = await freeBytes(dir).catch(() => Number.POSITIVE_INFINITY);
      if (free < SPACE_MARGIN_BYTES)
        return hvError('insufficient_storage', `${err.detail ?? ''}; ${free} bytes free in ${dir}`);
    }
    return err;
  }
}
