import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
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
import { readDomainDisks } from './domain-inspector';
import { DomainDisk, pushBackupXml } from './domain-xml';
import { canonicalDomainUuid } from './domain-identity';
import {
  classifyToolFailure,
  isDomainNotFound,
  isImageInUse,
  isNoSpace,
  isNotRunning,
  stepError,
  virshErrorText,
} from './errors';
import {
  FileHasher,
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
import {
  JOB_OPERATION_BACKUP,
  JOB_TYPE,
  jobProgress,
  jsonInt,
  parseDomInfo,
  parseDomJobInfoRaw,
  parseDomState,
  parseJsonObject,
  QemuImgProgressParser,
} from './parsers';
import { ProcessRunner, RunResult } from './process-runner';
import { Semaphore } from '../../common/semaphore';
import { allInOrder, childController, together } from './together';
import {
  MANIFEST_KIND,
  MANIFEST_VERSION,
  readManifest,
  serializeManifest,
  SnapshotManifest,
} from './snapshot-manifest';

export interface LibvirtDriverOptions {
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
  readonly runner?: ProcessRunner;
  /** sha256 of snapshot files (their manifests). Tests substitute a subclass. */
  readonly hasher?: FileHasher;
  readonly virshPath?: string;
  readonly qemuImgPath?: string;
  /** GNU coreutils `cp`: the byte copy of a plain disk (create) or a plain snapshot (restore). */
  readonly cpPath?: string;
  /** `qemu-io` (qemu-utils): holds a shut-off disk's image lock while `cp` copies it. */
  readonly qemuIoPath?: string;
  /** GNU coreutils `stdbuf`: makes qemu-io say at once that it holds the lock. */
  readonly stdbufPath?: string;
  /** Deadline of every short virsh / qemu-img call (state, info, measure, freeze, ...). Default 60 s. */
  readonly commandTimeoutMs?: number;
  /** A disk copy or check fails with `timeout` when slower than this (bytes/s of virtual size). Default 16 MiB/s. */
  readonly copyMinBytesPerSecond?: number;
  /** ...but is never given less than this. Default 10 min. */
  readonly copyTimeoutFloorMs?: number;
  /** Interval between `virsh domjobinfo` / `domstate` polls. Default 250 ms. */
  readonly pollIntervalMs?: number;
}

/** Extra space demanded beyond `qemu-img measure`'s requirement (metadata, manifest, rounding). */
const SPACE_MARGIN_BYTES = 8 * 1024 * 1024;
const MIB = 1024 * 1024;

/** Escapes a value for qemu's `--image-opts` key=value,key=value syntax. */
function imageOptValue(v: string): string {
  return v.replace(/,/g, ',,');
}

export class LibvirtHypervisorDriver implements HypervisorDriver {
  readonly name = 'libvirt';
  readonly capabilities: DriverCapabilities = { liveSnapshot: true, quiesce: true };

  private readonly uri: string;
  private readonly imageRoots: readonly string[];
  private readonly runner: ProcessRunner;
  private readonly hasher: FileHasher;
  private readonly virshPath: string;
  private readonly qemuImgPath: string;
  private readonly cpPath: string;
  private readonly qemuIoPath: string;
  private readonly stdbufPath: string;
  private readonly compression: 'none' | 'zstd';
  private readonly stopGraceSeconds: number;
  private readonly commandTimeoutMs: number;
  private readonly copyMinBytesPerSecond: number;
  private readonly copyTimeoutFloorMs: number;
  private readonly pollIntervalMs: number;
  private readonly copies: Semaphore;
  /** Unlinks still running after the call that started them returned (the replaced disks). */
  private readonly removals = new Map<string, Promise<void>>();

  constructor(options: LibvirtDriverOptions) {
    const uriProblem = libvirtUriProblem(options.uri ?? '');
    if (uriProblem) throw new Error(`LibvirtHypervisorDriver: ${uriProblem}, got "${options.uri}"`);
    this.uri = options.uri;
    if (!options.imageRoots?.length) throw new Error('LibvirtHypervisorDriver: imageRoots is required');
    this.imageRoots = [...options.imageRoots];
    this.runner = options.runner ?? new ProcessRunner();
    this.hasher = options.hasher ?? new FileHasher();
    this.virshPath = options.virshPath ?? 'virsh';
    this.qemuImgPath = options.qemuImgPath ?? 'qemu-img';
    this.cpPath = options.cpPath ?? 'cp';
    this.qemuIoPath = options.qemuIoPath ?? 'qemu-io';
    this.stdbufPath = options.stdbufPath ?? 'stdbuf';
    this.compression = options.compression ?? 'none';
    this.stopGraceSeconds = options.stopGraceSeconds ?? 60;
    this.commandTimeoutMs = options.commandTimeoutMs ?? 60_000;
    this.copyMinBytesPerSecond = options.copyMinBytesPerSecond ?? 16 * MIB;
    this.copyTimeoutFloorMs = options.copyTimeoutFloorMs ?? 10 * 60_000;
    this.pollIntervalMs = options.pollIntervalMs ?? 250;
    this.copies = new Semaphore(options.maxConcurrentCopies ?? 2);
  }

  // ------------------------------------------------------------------------------------------------
  // Power
  // ------------------------------------------------------------------------------------------------

  async findDomainUuid(name: string): Promise<string> {
    // `virsh domuuid <name>` would read an all-digit name as a domain id: the list matches names only.
    const args = ['list', '--all', '--uuid', '--name'];
    const r = await this.virshRaw(args);
    if (r.code !== 0) throw this.virshFailure(args, r);
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
    const r = await this.virshRaw(['start', '--domain', dom]);
    if (r.code === 0) return;
    if (/already (active|running)/i.test(r.stderr)) return;
    throw this.virshFailure(['start', '--domain', dom], r);
  }

  async stop(server: ServerRef, opts: { graceSeconds: number }): Promise<{ forced: boolean }> {
    const { uuid: dom, state } = await this.domainOf(server);
    if (state === 'shut off') return { forced: false };
    const grace =
      typeof opts?.graceSeconds === 'number' && Number.isFinite(opts.graceSeconds) && opts.graceSeconds >= 0
        ? opts.graceSeconds
        : this.stopGraceSeconds;

    // Graceful: libvirt picks the guest agent when it is connected, else ACPI.
    const r = await this.virshRaw(['shutdown', '--domain', dom]);
    if (r.code !== 0 && !isNotRunning(r.stderr)) {
      if (isDomainNotFound(r.stderr)) throw this.virshFailure(['shutdown'], r);
      // Other refusals (agent hung, ...) fall through to the forced path after the grace period.
    }
    if (await this.waitForState(dom, 'shut off', grace * 1000)) return { forced: false };

    const d = await this.virshRaw(['destroy', '--domain', dom]);
    if (d.code !== 0) {
      if (isNotRunning(d.stderr)) return { forced: false }; // it went down at the last moment
      throw this.virshFailure(['destroy', '--domain', dom], d);
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
      this.imageInfo(server.diskPath, true),
      this.measureRequired(server.diskPath, signal),
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
      const byteCopy = state === 'shut off' && this.compression === 'none' && src.plain;
      const measuredNow = waited ? await this.measureRequired(server.diskPath, signal) : measured;
      const required = byteCopy ? Math.max(measuredNow, src.actualSize) : measuredNow;
      await this.requireSpace(snap.snapshotDir, required, twoPass ? 2 : 1);

      let consistency: SnapshotConsistency;
      let leaksCopied = false;
      if (state === 'shut off') {
        leaksCopied = await this.copyShutOffDisk(server.diskPath, files.partial, byteCopy, {
          signal,
          virtualSize: src.virtualSize,
          bytes: src.actualSize,
          onPct: scaled(report, 0, 90),
        });
        consistency = 'stopped';
      } else {
        const target = twoPass ? files.stage : files.partial;
        consistency = await this.liveBackup(
          server,
          dom,
          target,
          src.virtualSize,
          signal,
          scaled(report, 0, twoPass ? 45 : 90),
        );
        if (twoPass) {
          await this.convert(files.stage, files.partial, {
            compress: true,
            signal,
            virtualSize: src.virtualSize,
            onPct: scaled(report, 45, 90),
            fallback: 'copy_failed',
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
        (s) => this.verifyImage(files.partial, src.virtualSize, s, 'verification_failed', leaksCopied),
        async () => {
          await fsp.chmod(files.partial, 0o600);
          await fsyncFile(files.partial);
          return (await this.imageInfo(files.partial, true)).actualSize;
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
    const [dom, { manifest, measured, byteCopy }] = await allInOrder([
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
          this.verifyImage(files.final, m.virtualSize, signal, 'verification_failed', true),
          this.measureRequired(files.final, signal),
        ] as const);
        // A byte copy of the snapshot is a valid disk only when the snapshot stands alone and is
        // clean; a compressed one is decompressed by qemu-img convert instead.
        const byteCopy =
          m.compression === 'none' && check.standalone && check.compressedClusters === 0 && !check.leaks;
        return { manifest: m, measured: required, byteCopy };
      })(),
    ] as const);
    const { release, waited } = await this.acquireCopySlotNoting(signal);
    try {
      await removeIfExists(restoring);
      report(0);
      const required = waited ? await this.measureRequired(files.final, signal) : measured;
      await this.requireSpace(path.dirname(server.diskPath), required, 1);

      await this.copyThenVerify(
        server,
        dom,
        files,
        manifest,
        restoring,
        byteCopy,
        signal,
        scaled(report, 0, 95),
      );

      // Renaming over the disk of a running VM "succeeds" and silently loses the restore: domstate was
      // looked at again after the copy; now let qemu-img try to take the disk's write lock, which fails
      // while any qemu has it open.
      throwIfAborted(signal);
      await this.requireDiskNotInUse(server.diskPath);
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
  // Live copy (virsh backup-begin, push mode, full)
  // ------------------------------------------------------------------------------------------------

  private async liveBackup(
    server: ServerRef,
    dom: string,
    target: string,
    virtualSize: number,
    signal: AbortSignal | undefined,
    onPct: (pct: number) => void,
  ): Promise<SnapshotConsistency> {
    const disks = await readDomainDisks(this.runner, this.uri, dom, {
      virshPath: this.virshPath,
      timeoutMs: this.commandTimeoutMs,
      signal,
    }).catch((e: unknown) => {
      throw stepError(e, 'hypervisor_error', 'dumpxml');
    });
    const ours = await this.findDisk(disks, server.diskPath);
    if (!ours?.target) {
      throw hvError(
        'hypervisor_error',
        `disk ${server.diskPath} is not attached to domain ${server.domain} (${dom})`,
      );
    }
    const xml = pushBackupXml(
      disks.flatMap((d) => (d.target ? [d.target] : [])),
      ours.target,
      target,
    );
    const tmpDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vps-backup-'));
    const xmlFile = path.join(tmpDir, 'backup.xml');
    await fsp.writeFile(xmlFile, xml, 'utf8');

    let consistency: SnapshotConsistency = 'crash_consistent';
    let jobStarted = false;
    try {
      const agent = await this.agentAnswers(dom);
      let freezeAttempted = false;
      let frozenCount = 0;
      let thawFailure: string | null = null;
      try {
        throwIfAborted(signal);
        if (agent) {
          freezeAttempted = true;
          // Bounded: the guest stays frozen at most this long plus the thaw.
          const fr = await this.virshRaw(['domfsfreeze', '--domain', dom], {
            timeoutMs: Math.min(this.commandTimeoutMs, 30_000),
          });
          if (fr.code === 0) {
            const m = /Froze\s+(\d+)\s+filesystem/i.exec(fr.stdout);
            frozenCount = m ? Number(m[1]) : 1;
          }
          // A failed freeze only lowers the consistency to crash_consistent.
        }
        const args = ['backup-begin', '--domain', dom, '--backupxml', xmlFile];
        // Until virsh answers, the job may or may not have started (e.g. virsh timed out): treat it as
        // started so a failure aborts it. A clean refusal (exit 1) started nothing - and must not
        // abort whatever other job the domain runs.
        jobStarted = true;
        const b = await this.virshRaw(args);
        if (b.code !== 0) {
          jobStarted = false;
          throw this.virshFailure(args, b, 'copy_failed');
        }
      } finally {
        if (freezeAttempted) thawFailure = await this.thaw(dom);
      }
      if (thawFailure !== null) {
        // The copy's start was captured, but a guest left frozen is worse than a failed snapshot.
        throw hvError('hypervisor_error', `guest filesystems could not be thawed: ${thawFailure}`);
      }
      if (frozenCount > 0) consistency = 'quiesced';

      await this.waitForBackup(dom, virtualSize, signal, onPct);
      jobStarted = false;
      return consistency;
    } catch (e) {
      if (jobStarted) await this.abortJob(dom);
      throw e;
    } finally {
      await fsp.rm(tmpDir, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  private async findDisk(disks: DomainDisk[], diskPath: string): Promise<DomainDisk | undefined> {
    const want = path.resolve(diskPath);
    const real = await fsp.realpath(want).catch(() => want);
    for (const d of disks) {
      if (!d.source || d.device !== 'disk') continue;
      const s = path.resolve(d.source);
      if (s === want || s === real) return d;
      const sReal = await fsp.realpath(s).catch(() => s);
      if (sReal === real) return d;
    }
    return undefined;
  }

  /** Whether the QEMU guest agent answers a ping within a few seconds. */
  private async agentAnswers(domain: string): Promise<boolean> {
    const r = await this.virshRaw(
      ['qemu-agent-command', '--domain', domain, '--timeout', '5', '{"execute":"guest-ping"}'],
      {
        timeoutMs: 15_000,
      },
    ).catch(() => null);
    return r !== null && r.code === 0 && r.stdout.includes('"return"');
  }

  /** Thaws with a few retries; returns null on success, else the last error text. */
  private async thaw(domain: string): Promise<string | null> {
    let last = '';
    for (let attempt = 0; attempt < 4; attempt++) {
      const r = await this.virshRaw(['domfsthaw', '--domain', domain]).catch((e: unknown) => ({
        code: -1,
        stdout: '',
        stderr: String(e),
      }));
      if (r.code === 0) return null;
      last = virshErrorText(r.stderr);
      // Nothing to thaw when the domain or its agent is gone.
      if (
        isDomainNotFound(r.stderr) ||
        isNotRunning(r.stderr) ||
        /not (connected|configured)/i.test(r.stderr)
      ) {
        return null;
      }
      await sleep(1000);
    }
    return last;
  }

  private async waitForBackup(
    domain: string,
    virtualSize: number,
    signal: AbortSignal | undefined,
    onPct: (pct: number) => void,
  ): Promise<void> {
    const deadline = Date.now() + this.copyTimeoutMs(virtualSize);
    for (;;) {
      throwIfAborted(signal);
      if (Date.now() > deadline) throw hvError('timeout', `backup of ${domain} exceeded its deadline`);
      const r = await this.virshRaw(['domjobinfo', '--domain', domain, '--rawstats'], { signal });
      if (r.code !== 0) throw this.virshFailure(['domjobinfo', '--domain', domain], r, 'copy_failed');
      const info = parseDomJobInfoRaw(r.stdout);
      if (info.type === JOB_TYPE.bounded || info.type === JOB_TYPE.unbounded) {
        const pct = jobProgress(info);
        if (pct !== null) onPct(pct);
        await sleep(this.pollIntervalMs, signal);
        continue;
      }
      break;
    }
    // The job has ended: its completed statistics say whether it succeeded. Without them the copy
    // cannot be trusted (an incomplete target still passes `qemu-img check`).
    const args = [
      'domjobinfo',
      '--domain',
      domain,
      '--completed',
      '--keep-completed',
      '--anystats',
      '--rawstats',
    ];
    const c = await this.virshRaw(args);
    if (c.code !== 0) throw this.virshFailure(args, c, 'copy_failed');
    const done = parseDomJobInfoRaw(c.stdout);
    const detail = `backup job of ${domain} ended: ${c.stdout.replace(/\s+/g, ' ').trim()}`;
    if (done.type === JOB_TYPE.completed) {
      const op = Number(done.fields.operation);
      if (Number.isFinite(op) && op !== JOB_OPERATION_BACKUP)
        throw hvError('copy_failed', `unexpected job: ${detail}`);
      const pct = jobProgress(done);
      if (pct !== null && pct < 100) throw hvError('copy_failed', `incomplete: ${detail}`);
      onPct(100);
      return;
    }
    if (done.type === JOB_TYPE.cancelled)
      throw hvError(signal?.aborted ? 'cancelled' : 'copy_failed', detail);
    const errmsg = done.fields.errmsg ?? '';
    if (isNoSpace(errmsg) || isNoSpace(c.stdout)) throw hvError('insufficient_storage', detail);
    throw hvError('copy_failed', detail);
  }

  /** Aborts the domain's block job (if any) and waits until libvirt reports no job. */
  private async abortJob(domain: string): Promise<void> {
    await this.virshRaw(['domjobabort', '--domain', domain]).catch(() => undefined);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const r = await this.virshRaw(['domjobinfo', '--domain', domain, '--rawstats']).catch(() => null);
      if (!r || r.code !== 0) return;
      const t = parseDomJobInfoRaw(r.stdout).type;
      if (t !== JOB_TYPE.bounded && t !== JOB_TYPE.unbounded) return;
      await sleep(this.pollIntervalMs);
    }
  }

  // ------------------------------------------------------------------------------------------------
  // qemu-img
  // ------------------------------------------------------------------------------------------------

  /**
   * The copy of a shut-off disk. A plain disk (`imageInfo().plain`) is copied byte for byte with `cp`
   * while a read-only `qemu-io` holds qemu's image lock on it — the lock `qemu-img convert` would take:
   * no domain can start on the disk and no qemu-img can write it until the copy is done, and a disk
   * some qemu has open for writing is refused (`invalid_power_state`). Anything else (or a disk that
   * stopped being plain before the lock was held) is copied by `qemu-img convert`. Returns whether the
   * copy may carry the disk's leaked clusters (a byte copy: harmless, `qemu-img check` exit 3).
   */
  private async copyShutOffDisk(
    disk: string,
    dest: string,
    byteCopy: boolean,
    o: { signal?: AbortSignal; virtualSize: number; bytes: number; onPct: (pct: number) => void },
  ): Promise<boolean> {
    if (byteCopy) {
      const lock = await this.holdImageLock(disk, o.virtualSize, o.signal);
      try {
        // Looked at again under the lock: nothing can change the disk from here on.
        const now = await this.imageInfo(disk, true);
        if (now.plain && now.virtualSize === o.virtualSize) {
          const length = (await fileSize(disk)) ?? now.actualSize;
          await this.byteCopy(disk, dest, { ...o, bytes: length });
          if (!(await lock.stillHeld())) {
            throw hvError('copy_failed', `the image lock on ${disk} ended before its copy did`);
          }
          return true;
        }
      } finally {
        await lock.release();
      }
    }
    await this.convert(disk, dest, {
      compress: this.compression === 'zstd',
      signal: o.signal,
      virtualSize: o.virtualSize,
      onPct: o.onPct,
      fallback: 'copy_failed',
    });
    return false;
  }

  /**
   * Opens `disk` read-only in `qemu-io` and keeps it open — holding qemu's image lock, which shuts
   * out every writer — until `release()` (or the copy deadline). qemu-io reads its commands from a
   * pipe this process keeps open, so it also exits (and the lock goes) the moment this process dies:
   * a crashed worker never leaves a disk locked. Resolves once the lock is held: qemu-io answers a
   * `length` command only while it has the image open with its locks (`stdbuf -oL` so the answer is
   * not held back in a buffer). `stillHeld()` asks again: true on an answer, false when qemu-io has
   * ended instead — a holder killed a moment ago is not mistaken for a live one. A disk that a qemu
   * process has open for writing is `invalid_power_state`.
   */
  private async holdImageLock(
    disk: string,
    virtualSize: number,
    signal: AbortSignal | undefined,
  ): Promise<{ stillHeld: () => Promise<boolean>; release: () => Promise<void> }> {
    const qemuIoArgs = ['-r', '-f', 'qcow2', disk];
    const args = ['-oL', this.qemuIoPath, ...qemuIoArgs];
    const { controller, dispose } = childController(signal);
    const commands = new PassThrough();
    let answers = 0; // qemu-io's prompt has no newline: each line is the answer to one `length`
    let waiting: Array<{ answers: number; resolve: () => void }> = [];
    const ended = this.runner
      .run(this.stdbufPath, args, {
        timeoutMs: this.copyTimeoutMs(virtualSize) + this.commandTimeoutMs,
        signal: controller.signal,
        stdin: commands,
        onStdout: (chunk) => {
          answers += chunk.split('\n').length - 1;
          for (const w of waiting.filter((x) => answers >= x.answers)) w.resolve();
          waiting = waiting.filter((x) => answers < x.answers);
        },
        env: { LC_ALL: 'C' },
      })
      .then(
        (r) => ({ r }),
        (e: unknown) => ({ e }),
      )
      .finally(dispose);
    const ask = (): Promise<boolean> => {
      const answered = new Promise<boolean>((resolve) =>
        waiting.push({ answers: answers + 1, resolve: () => resolve(true) }),
      );
      commands.write('length\n');
      return Promise.race([answered, ended.then(() => false)]);
    };
    const release = async (): Promise<void> => {
      controller.abort();
      await ended;
      commands.end();
    };
    if (!(await ask())) {
      const first = await ended;
      commands.end();
      if ('e' in first) throw stepError(first.e, 'hypervisor_error', 'qemu-io (image lock)');
      throw classifyToolFailure(this.qemuIoPath, qemuIoArgs, first.r, 'copy_failed');
    }
    return { stillHeld: ask, release };
  }

  private async convert(
    source: string,
    dest: string,
    o: {
      compress: boolean;
      signal?: AbortSignal;
      virtualSize: number;
      onPct: (pct: number) => void;
      fallback: 'copy_failed';
    },
  ): Promise<void> {
    const args = ['convert', '-p', '-f', 'qcow2', '-O', 'qcow2'];
    if (o.compress) args.push('-c', '-o', 'compression_type=zstd');
    args.push(source, dest);
    const parser = new QemuImgProgressParser(o.onPct);
    let r: RunResult;
    try {
      r = await this.runner.run(this.qemuImgPath, args, {
        timeoutMs: this.copyTimeoutMs(o.virtualSize),
        signal: o.signal,
        onStdout: (c) => parser.push(c),
        env: { LC_ALL: 'C' },
      });
    } catch (e) {
      throw stepError(e, o.fallback, 'qemu-img convert');
    }
    if (r.code !== 0) throw classifyToolFailure(this.qemuImgPath, args, r, o.fallback);
    o.onPct(100);
  }

  private async imageInfo(
    file: string,
    forceShare: boolean,
  ): Promise<{
    virtualSize: number;
    actualSize: number;
    clusterSize: number;
    standalone: boolean;
    plain: boolean;
  }> {
    const args = ['info', ...(forceShare ? ['-U'] : []), '-f', 'qcow2', '--output=json', file];
    const r = await this.qemuImg(args, 'hypervisor_error');
    const o = parseJsonObject(r.stdout);
    const virtualSize = jsonInt(o, 'virtual-size');
    const actualSize = jsonInt(o, 'actual-size');
    if (virtualSize === null || actualSize === null) {
      throw hvError(
        'hypervisor_error',
        `unexpected qemu-img info output for ${file}: ${r.stdout.slice(0, 500)}`,
      );
    }
    const asRecord = (v: unknown): Record<string, unknown> =>
      v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
    const none = (v: unknown): boolean => v === undefined || (Array.isArray(v) && v.length === 0);
    const qcow2 = asRecord(asRecord(o?.['format-specific']).data);
    // Standalone: no backing file, no external data file, not marked dirty.
    const standalone =
      o?.['backing-filename'] === undefined &&
      o?.['full-backing-filename'] === undefined &&
      qcow2['data-file'] === undefined &&
      o?.['dirty-flag'] !== true;
    // Plain: standalone, and nothing a convert would leave out or fail on — internal snapshots,
    // persistent bitmaps, encryption — nor marked corrupt. A byte copy of a plain image is the same
    // disk as a convert of it.
    const plain =
      standalone &&
      none(o?.snapshots) &&
      none(qcow2.bitmaps) &&
      qcow2.encrypt === undefined &&
      qcow2.corrupt !== true &&
      o?.['encrypted'] !== true;
    return { virtualSize, actualSize, clusterSize: jsonInt(o, 'cluster-size') ?? 65536, standalone, plain };
  }

  /**
   * `qemu-img check` plus the checks it does not make: the image must end within the file (a
   * truncated file), and have the expected virtual size. `failCode` is the code for a bad image.
   */
  private async verifyImage(
    file: string,
    virtualSize: number,
    signal: AbortSignal | undefined,
    failCode: 'verification_failed' | 'copy_failed',
    allowLeaks = false,
  ): Promise<{ fileBytes: number; standalone: boolean; compressedClusters: number; leaks: boolean }> {
    const args = ['check', '-f', 'qcow2', '--output=json', file];
    let r: RunResult;
    try {
      r = await this.runner.run(this.qemuImgPath, args, {
        timeoutMs: this.copyTimeoutMs(virtualSize),
        signal,
        env: { LC_ALL: 'C' },
      });
    } catch (e) {
      throw stepError(e, 'hypervisor_error', 'qemu-img check');
    }
    const ok = r.code === 0 || (allowLeaks && r.code === 3);
    if (!ok) {
      if (isImageInUse(r.stderr)) throw classifyToolFailure(this.qemuImgPath, args, r, failCode);
      throw hvError(
        failCode,
        `qemu-img check exit ${r.code}: ${r.stdout.slice(0, 2000)} ${r.stderr.slice(-2000)}`,
      );
    }
    const report = parseJsonObject(r.stdout);
    const end = jsonInt(report, 'image-end-offset');
    const compressedClusters = jsonInt(report, 'compressed-clusters') ?? 0;
    const bytes = await fileSize(file);
    if (bytes === null) throw hvError(failCode, `${file} disappeared`);
    const info = await this.imageInfo(file, false);
    // The image must end within the file. With compressed clusters the reported end is rounded up to
    // a whole cluster while the last compressed cluster may stop short of it; so with leaked clusters,
    // where the last (leaked) cluster can be a short metadata table (measured: an internal snapshot's
    // table left behind ended 65,469 bytes before the reported end).
    const slack = compressedClusters > 0 || r.code === 3 ? info.clusterSize : 0;
    if (end === null || end > bytes + slack) {
      throw hvError(failCode, `image end offset ${end} beyond file size ${bytes} (truncated?) for ${file}`);
    }
    if (info.virtualSize !== virtualSize) {
      throw hvError(failCode, `virtual size ${info.virtualSize} != expected ${virtualSize} for ${file}`);
    }
    return { fileBytes: bytes, standalone: info.standalone, compressedClusters, leaks: r.code === 3 };
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
    byteCopy: boolean,
    signal: AbortSignal | undefined,
    onPct: (pct: number) => void,
  ): Promise<void> {
    try {
      if (byteCopy) {
        await this.byteCopy(files.final, restoring, {
          signal,
          virtualSize: manifest.virtualSize,
          bytes: manifest.bytes,
          onPct: scaled(onPct, 0, 85),
        });
      } else {
        await this.convert(files.final, restoring, {
          compress: false,
          signal,
          virtualSize: manifest.virtualSize,
          onPct: scaled(onPct, 0, 85),
          fallback: 'copy_failed',
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
        byteCopy ? restoring : files.final,
        manifest,
        controller.signal,
        scaled(onPct, 85, 100),
      ).catch((e: unknown) => {
        controller.abort();
        throw e;
      });
      const rest = together(controller.signal, [
        (s) => this.verifyImage(restoring, manifest.virtualSize, s, 'copy_failed'),
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

  /**
   * Byte copy with GNU `cp` (argument array, no shell): holes kept and zero runs made holes
   * (`--sparse=always`), a reflink where the file system offers one (cp's default). Progress is the
   * target's length against the source's, polled.
   */
  private async byteCopy(
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
    }, this.pollIntervalMs);
    let r: RunResult;
    try {
      r = await this.runner.run(this.cpPath, args, {
        timeoutMs: this.copyTimeoutMs(o.virtualSize),
        signal: o.signal,
        env: { LC_ALL: 'C' },
      });
    } catch (e) {
      throw stepError(e, 'copy_failed', 'cp');
    } finally {
      clearInterval(poll);
    }
    if (r.code !== 0) throw classifyToolFailure(this.cpPath, args, r, 'copy_failed');
    o.onPct(100);
  }

  private async hash(
    file: string,
    expectedBytes: number,
    signal: AbortSignal | undefined,
    onPct: (pct: number) => void,
  ): Promise<{ sha256: string; bytes: number }> {
    return this.hasher.sha256(file, {
      signal,
      onBytes: (n) => onPct(expectedBytes > 0 ? (n / expectedBytes) * 100 : 100),
    });
  }

  /** Bytes a qcow2 copy of `source` needs (`qemu-img measure`), readable while a domain runs it. */
  private async measureRequired(source: string, signal?: AbortSignal): Promise<number> {
    const args = [
      'measure',
      '--output=json',
      '-O',
      'qcow2',
      '--image-opts',
      `driver=qcow2,file.driver=file,file.filename=${imageOptValue(source)},force-share=on`,
    ];
    const r = await this.qemuImg(args, 'hypervisor_error', signal);
    const required = jsonInt(parseJsonObject(r.stdout), 'required');
    if (required === null)
      throw hvError('hypervisor_error', `unexpected qemu-img measure output: ${r.stdout.slice(0, 500)}`);
    return required;
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
    this.requireShutOffState(domain, await this.domState(domain));
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

  /** qemu-img opening the disk without -U takes its lock: fails while any qemu process uses it. */
  private async requireDiskNotInUse(disk: string): Promise<void> {
    const args = ['info', '-f', 'qcow2', '--output=json', disk];
    const r = await this.qemuImgRaw(args);
    if (r.code === 0) return;
    if (isImageInUse(r.stderr)) {
      throw hvError(
        'invalid_power_state',
        `disk in use: ${r.stderr.trim()}`,
        'hypervisor_server_must_be_stopped',
      );
    }
    // A disk that cannot be opened at all (missing, damaged) is replaced by the restore anyway.
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

  private async qemuImgRaw(args: string[], signal?: AbortSignal): Promise<RunResult> {
    try {
      return await this.runner.run(this.qemuImgPath, args, {
        timeoutMs: this.commandTimeoutMs,
        signal,
        env: { LC_ALL: 'C' },
      });
    } catch (e) {
      throw stepError(e, 'hypervisor_error', 'qemu-img');
    }
  }

  private async qemuImg(
    args: string[],
    fallback: 'hypervisor_error' | 'copy_failed',
    signal?: AbortSignal,
  ): Promise<RunResult> {
    const r = await this.qemuImgRaw(args, signal);
    if (r.code !== 0) throw classifyToolFailure(this.qemuImgPath, args, r, fallback);
    return r;
  }

  // ------------------------------------------------------------------------------------------------
  // virsh
  // ------------------------------------------------------------------------------------------------

  private async virshRaw(
    args: string[],
    o: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<RunResult> {
    const full = ['-q', '-c', this.uri, ...args];
    try {
      return await this.runner.run(this.virshPath, full, {
        timeoutMs: o.timeoutMs ?? this.commandTimeoutMs,
        signal: o.signal,
        env: { LC_ALL: 'C' },
      });
    } catch (e) {
      throw stepError(e, 'hypervisor_error', `virsh ${args[0]}`);
    }
  }

  private virshFailure(
    args: string[],
    r: RunResult,
    fallback: 'hypervisor_error' | 'copy_failed' = 'hypervisor_error',
  ): HypervisorError {
    return classifyToolFailure(
      this.virshPath,
      args,
      { code: r.code, stderr: virshErrorText(r.stderr) },
      fallback,
    );
  }

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
    const r = await this.virshRaw(args);
    if (r.code !== 0) throw this.virshFailure(args, r);
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

  private async domState(domain: string): Promise<string> {
    const args = ['domstate', '--domain', domain];
    const r = await this.virshRaw(args);
    if (r.code !== 0) throw this.virshFailure(args, r);
    const state = parseDomState(r.stdout);
    if (!state) throw hvError('hypervisor_error', `empty virsh domstate output for ${domain}`);
    return state;
  }

  private async waitForState(domain: string, want: string, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if ((await this.domState(domain)) === want) return true;
      if (Date.now() >= deadline) return false;
      await sleep(Math.min(this.pollIntervalMs, Math.max(1, deadline - Date.now())));
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

  private copyTimeoutMs(virtualBytes: number): number {
    return Math.max(this.copyTimeoutFloorMs, Math.ceil((virtualBytes / this.copyMinBytesPerSecond) * 1000));
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
