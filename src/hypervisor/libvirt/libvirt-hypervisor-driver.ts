import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import {
  CreateSnapshotResult,
  DriverCapabilities,
  HypervisorDriver,
  HypervisorError,
  OperationOptions,
  PowerState,
  ServerRef,
  SnapshotConsistency,
  SnapshotRef,
} from '../hypervisor-driver';
import { diskMisplaced, hvError, progressGuard, scaled, sleep, throwIfAborted } from '../driver-errors';
import { DISK_SIDE_FILE_SUFFIXES, diskPathProblem, isInside } from '../host-paths';
import { libvirtUriProblem } from './connection-uri';
import { canonicalDomainUuid } from './domain-identity';
import { isDomainNotFound, isNotRunning, stepError } from './errors';
import {
  fileSize,
  freeBytes,
  fsyncDir,
  fsyncFile,
  isFile,
  linkIfExists,
  removeIfExists,
  removeQuietly,
  writeFileDurably,
} from './files';
import { parseDomInfo } from './parsers';
import { byteCopy } from './copy/byte-copy';
import { convert } from './copy/convert';
import { pushBackup } from './copy/push-backup';
import { Toolbox, ToolboxOptions } from './tools/toolbox';
import { Semaphore } from '../../common/semaphore';
import { allInOrder, childController, together } from './together';
import {
  MANIFEST_KIND,
  MANIFEST_VERSION,
  readManifest,
  serializeManifest,
  SnapshotManifest,
} from './snapshot-manifest';

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
  /** Unlinks still running after the call that started them returned (the replaced disks). */
  private readonly removals = new Map<string, Promise<void>>();

  constructor(options: LibvirtDriverOptions) {
    const uriProblem = libvirtUriProblem(options.uri ?? '');
    if (uriProblem) throw new Error(`LibvirtHypervisorDriver: ${uriProblem}, got "${options.uri}"`);
    if (!options.imageRoots?.length) throw new Error('LibvirtHypervisorDriver: imageRoots is required');
    this.imageRoots = [...options.imageRoots];
    this.tools = new Toolbox(options);
    this.compression = options.compression ?? 'none';
    this.stopGraceSeconds = options.stopGraceSeconds ?? 60;
    this.copies = new Semaphore(options.maxConcurrentCopies ?? 2);
  }

  // ------------------------------------------------------------------------------------------------
  // Power
  // ------------------------------------------------------------------------------------------------

  async findDomainUuid(name: string): Promise<string> {
    // `virsh domuuid <name>` would read an all-digit name as a domain id: the list matches names only.
    const args = ['list', '--all', '--uuid', '--name'];
    const r = await this.tools.virsh.raw(args);
    if (r.code !== 0) throw this.tools.virsh.failure(args, r);
    for (const line of r.stdout.split('\n')) {
      if (line.trim() === '') continue;
      const m = /^([0-9a-fA-F-]{36}) (.+)$/.exec(line.trim());
      if (!m || !canonicalDomainUuid(m[1])) {
        throw hvError('hypervisor_error', `unexpected virsh list --uuid --name line: ${line.slice(0, 200)}`);
      }
      if (m[2] === name) return canonicalDomainUuid(m[1])!;
    }
    throw hvError('domain_not_found', `no domain named ${name}`);
  }

  async getPowerState(server: ServerRef): Promise<PowerState> {
    return (await this.domainOf(server)).state === 'shut off' ? 'stopped' : 'running';
  }

  async start(server: ServerRef): Promise<void> {
    const { uuid: dom, state } = await this.domainOf(server);
    if (state !== 'shut off') return;
    const r = await this.tools.virsh.raw(['start', '--domain', dom]);
    if (r.code === 0) return;
    if (/already (active|running)/i.test(r.stderr)) return;
    throw this.tools.virsh.failure(['start', '--domain', dom], r);
  }

  async stop(server: ServerRef, opts: { graceSeconds: number }): Promise<{ forced: boolean }> {
    const { uuid: dom, state } = await this.domainOf(server);
    if (state === 'shut off') return { forced: false };
    const grace =
      typeof opts?.graceSeconds === 'number' && Number.isFinite(opts.graceSeconds) && opts.graceSeconds >= 0
        ? opts.graceSeconds
        : this.stopGraceSeconds;

    // Graceful: libvirt picks the guest agent when it is connected, else ACPI.
    const r = await this.tools.virsh.raw(['shutdown', '--domain', dom]);
    if (r.code !== 0 && !isNotRunning(r.stderr)) {
      if (isDomainNotFound(r.stderr)) throw this.tools.virsh.failure(['shutdown'], r);
      // Other refusals (agent hung, ...) fall through to the forced path after the grace period.
    }
    if (await this.waitForState(dom, 'shut off', grace * 1000)) return { forced: false };

    const d = await this.tools.virsh.raw(['destroy', '--domain', dom]);
    if (d.code !== 0) {
      if (isNotRunning(d.stderr)) return { forced: false }; // it went down at the last moment
      throw this.tools.virsh.failure(['destroy', '--domain', dom], d);
    }
    if (!(await this.waitForState(dom, 'shut off', 30_000))) {
      throw hvError('hypervisor_error', 'domain still not shut off 30 s after virsh destroy');
    }
    return { forced: true };
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
    const files = this.snapshotFiles(snap);
    const signal = opts.signal;
    const report = progressGuard(onProgress);
    throwIfAborted(signal);

    // Nothing reads the disk before it is known to lie inside the node's image roots.
    await this.requireDiskInRoots(server.diskPath);
    // Read-only look-ups, at once; their errors in this order (an unknown domain first).
    const [{ uuid: dom, state }, , src, measured] = await allInOrder([
      this.domainOf(server),
      this.refuseExisting(files),
      this.tools.qemuImg.info(server.diskPath, true),
      this.tools.qemuImg.measure(server.diskPath, signal),
    ] as const);
    const { release, waited } = await this.acquireCopySlotNoting(signal);
    try {
      await this.refuseExisting(files); // it may have appeared while this call waited for a copy slot
    } catch (e) {
      release();
      throw e;
    }
    let renamed = false;
    try {
      // qemu (user libvirt-qemu) must be able to reach a live backup's target: traverse-only for others.
      await fsp.mkdir(snap.snapshotDir, { recursive: true, mode: 0o711 });
      await this.removeLeftovers(files);
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
      let leaksCopied = false;
      if (state === 'shut off') {
        leaksCopied = await this.copyShutOffDisk(server.diskPath, files.partial, plainCopy, {
          signal,
          virtualSize: src.virtualSize,
          bytes: src.actualSize,
          onPct: scaled(report, 0, 90),
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
      }

      throwIfAborted(signal);
      // The copy is complete in the page cache. Three independent steps at once: the check (metadata
      // reads), the fsync (waits on the disk) and the sha256 pass (reads the cached file, waits on the
      // CPU). Any failure stops the others; nothing is committed before all three succeeded.
      const expectedBytes = await fileSize(files.partial);
      const [check, actualSize, hashed] = await together(signal, [
        (s) =>
          this.tools.qemuImg.verify(files.partial, src.virtualSize, s, 'verification_failed', leaksCopied),
        async () => {
          await fsp.chmod(files.partial, 0o600);
          await fsyncFile(files.partial);
          return (await this.tools.qemuImg.info(files.partial, true)).actualSize;
        },
        (s) => this.hash(files.partial, expectedBytes ?? 0, s, scaled(report, 90, 99)),
      ] as const);
      if (hashed.bytes !== check.fileBytes) {
        throw hvError(
          'verification_failed',
          `${files.partial} changed while it was verified (${hashed.bytes} bytes hashed, ${check.fileBytes} checked)`,
        );
      }
      const manifest: SnapshotManifest = {
        kind: MANIFEST_KIND,
        version: MANIFEST_VERSION,
        snapshotId: snap.id,
        file: path.basename(files.final),
        bytes: hashed.bytes,
        sha256: hashed.sha256,
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
      return { sizeBytes: actualSize, consistency };
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
    const files = this.snapshotFiles(snap);
    const signal = opts.signal;
    const report = progressGuard(onProgress);
    const restoring = `${server.diskPath}${DISK_SIDE_FILE_SUFFIXES.restoring}`;
    const replaced = `${server.diskPath}${DISK_SIDE_FILE_SUFFIXES.replaced}`;
    throwIfAborted(signal);

    // Nothing is written next to the disk before it is known to lie inside the node's image roots.
    await this.requireDiskInRoots(server.diskPath);
    // Read-only look-ups, at once; their errors in this order (a domain that is not shut off first,
    // then a missing snapshot, a manifest that does not describe it, a damaged image, the space).
    const [dom, { manifest, measured, plainCopy }] = await allInOrder([
      this.domainOf(server).then(({ uuid, state }) => {
        this.requireShutOffState(uuid, state);
        return uuid;
      }),
      (async () => {
        const present = await isFile(files.final).catch((e: unknown) => {
          throw stepError(e, 'hypervisor_error', 'stat snapshot');
        });
        // Present without its manifest: not ours to trust; readSnapshotManifest refuses it.
        if (!present) throw hvError('snapshot_not_found', `no snapshot file ${files.final}`);
        const m = await this.readSnapshotManifest(snap, files);
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

      await this.copyThenVerify(
        server,
        dom,
        files,
        manifest,
        restoring,
        plainCopy,
        signal,
        scaled(report, 0, 95),
      );

      // Renaming over the disk of a running VM "succeeds" and silently loses the restore: domstate was
      // looked at again after the copy; now let qemu-img try to take the disk's write lock, which fails
      // while any qemu has it open.
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
      // The disk is replaced from here on; a failing directory fsync cannot undo that, so it is not
      // reported as a failed restore.
      await fsyncDir(path.dirname(server.diskPath)).catch(() => undefined);
      this.removeLater(replaced);
      report(100);
    } catch (e) {
      await removeQuietly(restoring, replaced);
      throw await this.finalError(e, signal, 'copy_failed', path.dirname(server.diskPath));
    } finally {
      release();
    }
  }

  async deleteSnapshot(_server: ServerRef, snap: SnapshotRef): Promise<void> {
    const files = this.snapshotFiles(snap);
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
    const files = this.snapshotFiles(snap);
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
    const ids = new Set<number>();
    try {
      let names: string[] = [];
      try {
        names = await fsp.readdir(snapshotDir);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      const present = new Set(names);
      for (const name of names) {
        const partial = /^(\d+)\.qcow2\.(partial|stage|json\.partial)$/.exec(name);
        const manifest = /^(\d+)\.qcow2\.json$/.exec(name);
        if (partial) {
          await removeIfExists(path.join(snapshotDir, name));
          ids.add(Number(partial[1]));
        } else if (manifest && !present.has(`${manifest[1]}.qcow2`)) {
          // A manifest whose snapshot never got renamed into place: the create was interrupted.
          await removeIfExists(path.join(snapshotDir, name));
          ids.add(Number(manifest[1]));
        }
      }
      for (const disk of diskPaths) {
        // Never remove anything outside the node's image roots, whatever the database says.
        if (
          !(await this.requireDiskInRoots(disk).then(
            () => true,
            () => false,
          ))
        )
          continue;
        await removeIfExists(`${disk}${DISK_SIDE_FILE_SUFFIXES.restoring}`);
        // A second name of a disk, never the disk itself.
        await removeIfExists(`${disk}${DISK_SIDE_FILE_SUFFIXES.replaced}`);
      }
      if (names.length > 0) await fsyncDir(snapshotDir).catch(() => undefined);
    } catch (e) {
      throw stepError(e, 'hypervisor_error', 'cleanup interrupted');
    }
    return { partialSnapshotIds: [...ids].sort((a, b) => a - b) };
  }

  // ------------------------------------------------------------------------------------------------
  // Copies and checks
  // ------------------------------------------------------------------------------------------------

  /**
   * The copy of a shut-off disk: byte for byte under its image lock when it is plain (see byteCopy),
   * else — or when it stopped being plain before the lock was held — by `qemu-img convert`. Returns
   * whether the copy may carry the disk's leaked clusters (a byte copy: harmless, check exit 3).
   */
  private async copyShutOffDisk(
    disk: string,
    dest: string,
    plain: boolean,
    o: { signal?: AbortSignal; virtualSize: number; bytes: number; onPct: (pct: number) => void },
  ): Promise<boolean> {
    if (plain && (await byteCopy(this.tools, disk, dest, { ...o, underImageLock: true }))) return true;
    await convert(this.tools, disk, dest, { ...o, compress: this.compression === 'zstd' });
    return false;
  }

  /** The snapshot's manifest, refused unless it describes this snapshot file and its byte length. */
  private async readSnapshotManifest(snap: SnapshotRef, files: SnapshotFiles): Promise<SnapshotManifest> {
    const manifest = await readManifest(files.manifest);
    if (!manifest) throw hvError('verification_failed', `missing or invalid manifest ${files.manifest}`);
    if (manifest.snapshotId !== snap.id || manifest.file !== path.basename(files.final)) {
      throw hvError('verification_failed', `manifest ${files.manifest} describes another snapshot`);
    }
    const bytes = await fileSize(files.final);
    if (bytes !== manifest.bytes) {
      throw hvError(
        'verification_failed',
        `snapshot ${files.final} is ${bytes} bytes, manifest says ${manifest.bytes}`,
      );
    }
    return manifest;
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
  private async copyThenVerify(
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
        await byteCopy(this.tools, files.final, restoring, {
          signal,
          virtualSize: manifest.virtualSize,
          bytes: manifest.bytes,
          onPct: scaled(onPct, 0, 85),
        });
      } else {
        await convert(this.tools, files.final, restoring, {
          compress: false,
          signal,
          virtualSize: manifest.virtualSize,
          onPct: scaled(onPct, 0, 85),
        });
      }
    } catch (e) {
      throwIfAborted(signal);
      // A damaged snapshot that breaks the copy is refused as such, not retried as a copy failure.
      await this.requireManifestHash(files.final, manifest, signal, () => undefined);
      throw e;
    }
    const { controller, dispose } = childController(signal);
    try {
      const verified = this.requireManifestHash(
        plainCopy ? restoring : files.final,
        manifest,
        controller.signal,
        scaled(onPct, 85, 100),
      ).catch((e: unknown) => {
        controller.abort();
        throw e;
      });
      const rest = together(controller.signal, [
        (s) => this.tools.qemuImg.verify(restoring, manifest.virtualSize, s, 'copy_failed'),
        async () => {
          await this.copyOwnership(server.diskPath, restoring);
          await fsyncFile(restoring);
        },
        () => this.requireShutOff(dom),
      ] as const);
      const [v, r] = await Promise.allSettled([verified, rest]);
      if (v.status === 'rejected') throw v.reason;
      if (r.status === 'rejected') throw r.reason;
    } finally {
      dispose();
    }
  }

  /** sha256 and length of `file` against the manifest; a mismatch is `verification_failed`. */
  private async requireManifestHash(
    file: string,
    manifest: SnapshotManifest,
    signal: AbortSignal | undefined,
    onPct: (pct: number) => void,
  ): Promise<void> {
    const h = await this.hash(file, manifest.bytes, signal, onPct);
    if (h.sha256 !== manifest.sha256 || h.bytes !== manifest.bytes) {
      throw hvError('verification_failed', `sha256 of ${file} does not match the snapshot's manifest`);
    }
  }

  private async hash(
    file: string,
    expectedBytes: number,
    signal: AbortSignal | undefined,
    onPct: (pct: number) => void,
  ): Promise<{ sha256: string; bytes: number }> {
    return this.tools.hasher.sha256(file, {
      signal,
      onBytes: (n) => onPct(expectedBytes > 0 ? (n / expectedBytes) * 100 : 100),
    });
  }

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
        `need ${need} bytes in ${dir} (qemu-img measure: ${required}), ${free} free`,
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

  private async requireShutOff(domain: string): Promise<void> {
    this.requireShutOffState(domain, await this.tools.virsh.domState(domain));
  }

  private requireShutOffState(domain: string, state: string): void {
    if (state !== 'shut off') {
      throw hvError(
        'invalid_power_state',
        `domain ${domain} is ${state}`,
        'hypervisor_server_must_be_stopped',
      );
    }
  }

  private async copyOwnership(from: string, to: string): Promise<void> {
    try {
      const st = await fsp.stat(from);
      await fsp.chown(to, st.uid, st.gid);
      await fsp.chmod(to, st.mode & 0o7777);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }

  // ------------------------------------------------------------------------------------------------
  // virsh
  // ------------------------------------------------------------------------------------------------

  /**
   * The domain of `server` as every virsh call here addresses it — its UUID, never its name (virsh
   * reads a name such as `12` as a domain id) — and its state, from one `virsh dominfo`, which also
   * says the domain's name: a domain with this UUID that no longer has the server's name (renamed, or
   * undefined and another defined under the name) is `domain_not_found`, never another VM.
   */
  private async domainOf(server: ServerRef): Promise<{ uuid: string; state: string }> {
    const uuid = server.domainUuid === null ? null : canonicalDomainUuid(server.domainUuid);
    if (uuid === null) {
      throw hvError(
        'domain_not_found',
        `server ${server.id} has no valid domain UUID (${server.domainUuid})`,
      );
    }
    const args = ['dominfo', '--domain', uuid];
    const r = await this.tools.virsh.raw(args);
    if (r.code !== 0) throw this.tools.virsh.failure(args, r);
    const { name, state } = parseDomInfo(r.stdout);
    if (name !== server.domain) {
      throw hvError(
        'domain_not_found',
        `domain ${uuid} is named "${name}", the server's domain is "${server.domain}" (renamed or redefined)`,
      );
    }
    if (!state) throw hvError('hypervisor_error', `no state in virsh dominfo output for ${uuid}`);
    return { uuid, state };
  }

  /**
   * Refuses (not retryable) a disk that does not lie inside one of the node's image roots: as written
   * (normal form, inside a root), and as the file system resolves it — the disk's directory, and the
   * disk itself when it exists, resolved through symbolic links, inside a root resolved the same way.
   */
  private async requireDiskInRoots(disk: string): Promise<void> {
    const refuse = (why: string) => diskMisplaced(`${disk}: ${why}`);
    const written = diskPathProblem(disk, this.imageRoots);
    if (written) throw refuse(written);
    const real = async (p: string) => {
      try {
        return await fsp.realpath(p);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw stepError(e, 'hypervisor_error', `realpath ${p}`);
      }
    };
    const roots = (await Promise.all(this.imageRoots.map(real))).filter((r): r is string => r !== null);
    const within = (p: string) => roots.some((root) => p === root || isInside(p, root));
    const dir = await real(path.dirname(disk));
    if (dir === null || !within(dir)) throw refuse(`its directory resolves to ${dir ?? 'nothing'}`);
    const file = await real(disk);
    if (file !== null && !within(file)) throw refuse(`it resolves to ${file}`);
  }

  private async waitForState(domain: string, want: string, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if ((await this.tools.virsh.domState(domain)) === want) return true;
      if (Date.now() >= deadline) return false;
      await sleep(Math.min(this.tools.pollIntervalMs, Math.max(1, deadline - Date.now())));
    }
  }

  // ------------------------------------------------------------------------------------------------
  // Helpers
  // ------------------------------------------------------------------------------------------------

  /** Resolves when the unlinks started by earlier calls (the disks that restores replaced) are done. */
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

  private snapshotFiles(snap: SnapshotRef): SnapshotFiles {
    if (!Number.isSafeInteger(snap.id) || snap.id <= 0) {
      throw hvError('hypervisor_error', `invalid snapshot id ${String(snap.id)}`);
    }
    if (!snap.snapshotDir || !path.isAbsolute(snap.snapshotDir)) {
      throw hvError('hypervisor_error', `snapshot directory must be absolute: ${snap.snapshotDir}`);
    }
    const final = path.join(snap.snapshotDir, `${snap.id}.qcow2`);
    return {
      final,
      partial: `${final}.partial`,
      stage: `${final}.stage`,
      manifest: `${final}.json`,
      manifestTmp: `${final}.json.partial`,
    };
  }

  private async refuseExisting(files: SnapshotFiles): Promise<void> {
    let exists: boolean;
    try {
      exists = await isFile(files.final);
    } catch (e) {
      throw stepError(e, 'hypervisor_error', 'stat snapshot');
    }
    if (exists) throw hvError('snapshot_exists', `snapshot file already exists: ${files.final}`);
  }

  private async removeLeftovers(files: SnapshotFiles): Promise<void> {
    await removeIfExists(files.partial);
    await removeIfExists(files.stage);
    await removeIfExists(files.manifestTmp);
    await removeIfExists(files.manifest); // no snapshot file: an orphan of an interrupted create
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

interface SnapshotFiles {
  /** `<dir>/<id>.qcow2`: the stored, verified snapshot (its presence is the commit point). */
  readonly final: string;
  /** `<id>.qcow2.partial`: being written. */
  readonly partial: string;
  /** `<id>.qcow2.stage`: uncompressed live backup before zstd compression. */
  readonly stage: string;
  /** `<id>.qcow2.json`: the manifest (byte length, sha256). */
  readonly manifest: string;
  readonly manifestTmp: string;
}
