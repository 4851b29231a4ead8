import { diskMisplaced, progressGuard, sleep, throwIfAborted, toHypervisorError } from '../driver-errors';
import {
  BackupReadOptions,
  BackupReadSession,
  CreateSnapshotResult,
  DiskImageWriter,
  DriverCapabilities,
  HypervisorDriver,
  isHypervisorError,
  ObservedPowerState,
  OperationOptions,
  PowerState,
  ServerRef,
  SnapshotConsistency,
  SnapshotRef,
} from '../hypervisor-driver';
import {
  diskInUse,
  FakeCheckpoints,
  FakePower,
  fakeRestoreDiskFrom,
  openFakeBackupRead,
} from './fake-backup';
import { parseFakeDriverEnv } from './fake-driver-env';
import { FakeDomain, normalizeDir, PartialSnapshot, sha256, snapshotKey, StoredSnapshot } from './fake-state';
import {
  fakeDiskContent,
  FakeDomainDefinition,
  fakeDomainUuid,
  FakeHypervisorDriverOptions,
} from './fake-definitions';
import {
  FailureInjection,
  FakeInjectableMethod,
  fakeError,
  FaultInjector,
  nonNegativeInteger,
} from './fault-injection';

/**
 * The in-memory hypervisor driver used by tests and by local/e2e runs without libvirt.
 *
 * It follows `hypervisor-driver.ts` exactly (same preconditions, same typed errors, same idempotency)
 * and passes the same contract suite as the real driver (`test/contract/`). On top of the
 * `HypervisorDriver` interface it has a test-facing API (the methods marked "Test helper") to set up
 * domains, look at disks and snapshots, simulate crash leftovers, and inject failures.
 *
 * State lives in the instance, so it is shared by everything in one process that holds the same
 * instance (e.g. a worker module and the test that built it). Separate processes cannot share it: for
 * those, build the driver with `FakeHypervisorDriver.fromEnv()`, which auto-defines unknown domains
 * (see `autoDefineDomains`) and reads fault injection from the environment.
 */

export { FAKE_AUTO_DISK_BYTES, fakeDiskContent, fakeDomainUuid } from './fake-definitions';
export type { FakeDomainDefinition, FakeHypervisorDriverOptions } from './fake-definitions';

export class FakeHypervisorDriver implements HypervisorDriver {
  readonly name = 'fake';
  readonly capabilities: DriverCapabilities;

  private readonly copyDelayMs: number;
  private readonly progressSteps: number;
  private readonly snapshotSizeBytes: number | undefined;
  private readonly autoDefineDomains: boolean;
  /** Names undefined by `undefineDomain`: not auto-defined again (until `defineDomain`). */
  private readonly undefinedNames = new Set<string>();

  private readonly domains = new Map<string, FakeDomain>();
  private readonly snapshots = new Map<string, StoredSnapshot>();
  private readonly partials = new Map<string, PartialSnapshot>();
  /** Half-written restore files, by disk path (value: the restore that writes it, or undefined for a leftover). */
  private readonly restoreFiles = new Map<string, object | undefined>();
  private readonly faults = new FaultInjector();

  constructor(options: FakeHypervisorDriverOptions = {}) {
    this.capabilities = {
      liveSnapshot: options.capabilities?.liveSnapshot ?? true,
      quiesce: options.capabilities?.quiesce ?? false,
    };
    this.copyDelayMs = nonNegativeInteger(options.copyDelayMs ?? 0, 'copyDelayMs');
    this.progressSteps = nonNegativeInteger(options.progressSteps ?? 4, 'progressSteps');
    if (this.progressSteps < 1) throw new Error('FakeHypervisorDriver: progressSteps must be at least 1');
    this.snapshotSizeBytes =
      options.snapshotSizeBytes === undefined
        ? undefined
        : nonNegativeInteger(options.snapshotSizeBytes, 'snapshotSizeBytes');
    this.autoDefineDomains = options.autoDefineDomains ?? false;
    for (const failure of options.failures ?? []) this.injectFailure(failure);
  }

  /**
   * Builds a fake from environment variables, for a worker running as a separate process (see
   * `parseFakeDriverEnv` for the variables). `autoDefineDomains` defaults to true here.
   * Throws an `Error` naming the variable when a value is malformed.
   */
  static fromEnv(
    env: Readonly<Record<string, string | undefined>> = process.env,
    overrides: FakeHypervisorDriverOptions = {},
  ): FakeHypervisorDriver {
    return new FakeHypervisorDriver({ autoDefineDomains: true, ...parseFakeDriverEnv(env), ...overrides });
  }

  // ---------------------------------------------------------------- HypervisorDriver

  async findDomainUuid(name: string): Promise<string> {
    let domain = this.domains.get(name);
    if (!domain && this.autoDefineDomains && !this.undefinedNames.has(name)) {
      this.defineDomain(name, { running: false });
      domain = this.domains.get(name);
    }
    if (!domain) throw fakeError('domain_not_found', `no domain named ${name}`);
    return domain.uuid;
  }

  async getPowerState(server: ServerRef): Promise<PowerState> {
    await this.intercept('getPowerState', undefined);
    return diskInUse(this.domainOf(server).power) ? 'running' : 'stopped';
  }

  async observePowerStates(servers: readonly ServerRef[]): Promise<ObservedPowerState[]> {
    await this.intercept('observePowerStates', undefined);
    return servers.map((server) => {
      try {
        return this.domainOf(server).power;
      } catch (e) {
        if (isHypervisorError(e) && e.code === 'domain_not_found') return 'missing';
        throw e;
      }
    });
  }

  async start(server: ServerRef): Promise<void> {
    await this.intercept('start', undefined);
    this.domainOf(server).power = 'running';
  }

  async stop(server: ServerRef, _opts: { graceSeconds: number }): Promise<{ forced: boolean }> {
    await this.intercept('stop', undefined);
    const domain = this.domainOf(server);
    if (!diskInUse(domain.power)) return { forced: false };
    domain.power = 'stopped';
    return { forced: !domain.gracefulShutdown };
  }

  async powerOff(server: ServerRef): Promise<void> {
    await this.intercept('powerOff', undefined);
    const domain = this.domainOf(server);
    if (diskInUse(domain.power)) domain.power = 'stopped';
  }

  /** A guest defined with `gracefulShutdown: false` ignores the request: `shutdown_timeout` at once. */
  async shutdown(server: ServerRef, opts: { graceSeconds: number; signal?: AbortSignal }): Promise<void> {
    throwIfAborted(opts.signal);
    await this.intercept('shutdown', opts.signal);
    const domain = this.domainOf(server);
    if (!diskInUse(domain.power)) return;
    if (!domain.gracefulShutdown) {
      throw fakeError('shutdown_timeout', `guest ignored the shutdown request for ${opts.graceSeconds} s`);
    }
    domain.power = 'stopped';
  }

  async createSnapshot(
    server: ServerRef,
    snap: SnapshotRef,
    onProgress: (pct: number) => void,
    opts: OperationOptions = {},
  ): Promise<CreateSnapshotResult> {
    const { signal } = opts;
    this.count('createSnapshot');
    throwIfAborted(signal);
    const domain = this.domainOf(server);
    const key = snapshotKey(snap.snapshotDir, snap.id);
    if (this.snapshots.has(key)) throw fakeError('snapshot_exists', `snapshot ${snap.id} is already stored`);
    if (this.partials.get(key)?.owner) {
      throw fakeError(
        'hypervisor_error',
        `snapshot ${snap.id} is being written by another call`,
        'hypervisor_snapshot_busy',
      );
    }
    let consistency: SnapshotConsistency = 'stopped';
    if (diskInUse(domain.power)) {
      if (!this.capabilities.liveSnapshot) {
        throw fakeError(
          'invalid_power_state',
          'live snapshots are disabled',
          'hypervisor_server_must_be_stopped',
        );
      }
      consistency = this.capabilities.quiesce ? 'quiesced' : 'crash_consistent';
    }
    // Point-in-time copy: what the disk holds now, whatever the guest writes later.
    const content = Buffer.from(domain.disk);
    const owner = {};
    this.partials.set(key, { snapshotDir: normalizeDir(snap.snapshotDir), id: snap.id, owner });
    try {
      await this.copy('createSnapshot', progressGuard(onProgress), signal);
      if (this.partials.get(key)?.owner !== owner) {
        throw fakeError('copy_failed', `partial file of snapshot ${snap.id} was removed during the copy`);
      }
      this.snapshots.set(key, { bytes: content, sha256: sha256(content) });
      this.partials.delete(key);
      return { sizeBytes: this.snapshotSizeBytes ?? content.length, consistency };
    } catch (e) {
      if (this.partials.get(key)?.owner === owner) this.partials.delete(key);
      throw toHypervisorError(e, 'hypervisor_error', 'fake: unexpected error');
    }
  }

  async restoreSnapshot(
    server: ServerRef,
    snap: SnapshotRef,
    onProgress: (pct: number) => void,
    opts: OperationOptions = {},
  ): Promise<void> {
    const { signal } = opts;
    this.count('restoreSnapshot');
    throwIfAborted(signal);
    const domain = this.domainOf(server);
    if (diskInUse(domain.power)) {
      throw fakeError('invalid_power_state', 'domain is running', 'hypervisor_server_must_be_stopped');
    }
    const stored = this.snapshots.get(snapshotKey(snap.snapshotDir, snap.id));
    if (!stored) throw fakeError('snapshot_not_found', `no complete snapshot ${snap.id}`);
    if (sha256(stored.bytes) !== stored.sha256) {
      throw fakeError(
        'verification_failed',
        `snapshot ${snap.id} does not match its digest (truncated or damaged)`,
      );
    }
    const content = Buffer.from(stored.bytes);
    const owner = {};
    this.restoreFiles.set(server.diskPath, owner);
    try {
      await this.copy('restoreSnapshot', progressGuard(onProgress), signal);
      if (this.restoreFiles.get(server.diskPath) !== owner) {
        throw fakeError('copy_failed', 'restore file was removed during the copy');
      }
      if (diskInUse(domain.power)) {
        throw fakeError(
          'invalid_power_state',
          'domain was started during the restore',
          'hypervisor_server_must_be_stopped',
        );
      }
      domain.disk = content;
      domain.checkpoints.clear(); // the restored disk carries none of the old disk's bitmaps
    } catch (e) {
      throw toHypervisorError(e, 'hypervisor_error', 'fake: unexpected error');
    } finally {
      if (this.restoreFiles.get(server.diskPath) === owner) this.restoreFiles.delete(server.diskPath);
    }
  }

  async deleteSnapshot(_server: ServerRef, snap: SnapshotRef): Promise<void> {
    await this.intercept('deleteSnapshot', undefined);
    const key = snapshotKey(snap.snapshotDir, snap.id);
    this.snapshots.delete(key);
    this.partials.delete(key);
  }

  async snapshotExists(snap: SnapshotRef): Promise<boolean> {
    return this.snapshots.has(snapshotKey(snap.snapshotDir, snap.id));
  }

  async cleanupInterrupted(
    snapshotDir: string,
    diskPaths: readonly string[],
  ): Promise<{ partialSnapshotIds: number[] }> {
    const dir = normalizeDir(snapshotDir);
    const partialSnapshotIds: number[] = [];
    for (const [key, partial] of this.partials) {
      if (partial.snapshotDir !== dir) continue;
      this.partials.delete(key);
      partialSnapshotIds.push(partial.id);
    }
    for (const diskPath of diskPaths) this.restoreFiles.delete(diskPath);
    return { partialSnapshotIds: partialSnapshotIds.sort((a, b) => a - b) };
  }

  async openBackupRead(server: ServerRef, opts: BackupReadOptions): Promise<BackupReadSession> {
    await this.intercept('openBackupRead', opts.signal);
    const domain = this.domainOf(server);
    const live = this.capabilities.quiesce ? 'quiesced' : 'crash_consistent';
    return openFakeBackupRead(domain, opts, diskInUse(domain.power) ? live : 'stopped');
  }

  async restoreDiskFrom(
    server: ServerRef,
    virtualSizeBytes: number,
    fill: (disk: DiskImageWriter) => Promise<void>,
    onProgress: (pct: number) => void,
    opts: OperationOptions = {},
  ): Promise<void> {
    await this.intercept('restoreDiskFrom', opts.signal);
    const domain = this.domainOf(server);
    const files = this.restoreFiles;
    await fakeRestoreDiskFrom(domain, virtualSizeBytes, fill, onProgress, opts.signal, {
      open: () => {
        const owner = {};
        files.set(server.diskPath, owner);
        return owner;
      },
      isOurs: (owner) => files.get(server.diskPath) === owner,
      remove: (owner) => void (files.get(server.diskPath) === owner && files.delete(server.diskPath)),
    });
  }

  // ---------------------------------------------------------------- test helpers

  /** Test helper: the names of the checkpoints on a domain's disk. */
  checkpointNames(domain: string): string[] {
    return this.knownDomain(domain).checkpoints.names();
  }

  /** Test helper: a hypervisor crash (qemu killed): every checkpoint's bitmap is left inconsistent. */
  crashCheckpoints(domain: string): void {
    this.knownDomain(domain).checkpoints.breakAll();
  }

  /** Test helper: define (or redefine, replacing all its state) a domain. */
  defineDomain(name: string, definition: FakeDomainDefinition = {}): void {
    this.undefinedNames.delete(name);
    this.domains.set(name, {
      name,
      uuid: definition.uuid ?? fakeDomainUuid(name),
      diskPath: definition.diskPath,
      power: definition.running ? 'running' : 'stopped',
      disk: Buffer.from(definition.diskBytes ?? fakeDiskContent(name)),
      gracefulShutdown: definition.gracefulShutdown ?? true,
      checkpoints: new FakeCheckpoints(),
    });
  }

  /** Test helper: undefine a domain, as an operator removing it behind the API's back would. */
  undefineDomain(name: string): void {
    this.knownDomain(name);
    this.domains.delete(name);
    this.undefinedNames.add(name);
  }

  /** Test helper: whether a domain is defined (by `defineDomain` or auto-definition). */
  hasDomain(name: string): boolean {
    return this.domains.has(name);
  }

  /**
   * Test helper: write to a domain's disk, as the guest would. Without `offset` the whole disk is
   * replaced by `bytes`; with it, `bytes` are written at `offset` (the disk grows when needed).
   */
  writeDisk(domain: string, bytes: Buffer, offset?: number): void {
    const d = this.knownDomain(domain);
    d.checkpoints.recordWrite(
      offset ?? 0,
      offset === undefined ? Math.max(d.disk.length, bytes.length) : bytes.length,
    );
    if (offset === undefined) {
      d.disk = Buffer.from(bytes);
      return;
    }
    nonNegativeInteger(offset, 'offset');
    const disk =
      d.disk.length >= offset + bytes.length ? Buffer.from(d.disk) : Buffer.alloc(offset + bytes.length);
    d.disk.copy(disk, 0, 0, Math.min(d.disk.length, disk.length));
    bytes.copy(disk, offset);
    d.disk = disk;
  }

  /** Test helper: a copy of a domain's current disk content. */
  readDisk(domain: string): Buffer {
    return Buffer.from(this.knownDomain(domain).disk);
  }

  /** Test helper: change a domain's power state directly (as if the guest powered itself off, say). */
  setPowerState(domain: string, state: FakePower): void {
    this.knownDomain(domain).power = state;
  }

  /** Test helper: a copy of a complete stored snapshot's bytes, or undefined. */
  readSnapshot(snapshotDir: string, id: number): Buffer | undefined {
    const stored = this.snapshots.get(snapshotKey(snapshotDir, id));
    return stored && Buffer.from(stored.bytes);
  }

  /** Test helper: truncate a stored snapshot (to half its length), so that restoring it fails verification. */
  corruptSnapshot(snapshotDir: string, id: number): void {
    const stored = this.snapshots.get(snapshotKey(snapshotDir, id));
    if (!stored)
      throw new Error(`FakeHypervisorDriver.corruptSnapshot: no stored snapshot ${id} in ${snapshotDir}`);
    stored.bytes = stored.bytes.subarray(0, Math.floor(stored.bytes.length / 2));
    if (sha256(stored.bytes) === stored.sha256) stored.bytes = Buffer.from('corrupt');
  }

  /** Test helper: leave a partial file of snapshot `id`, as a crash during its creation would. */
  markPartial(snapshotDir: string, id: number): void {
    this.partials.set(snapshotKey(snapshotDir, id), {
      snapshotDir: normalizeDir(snapshotDir),
      id,
      owner: undefined,
    });
  }

  /** Test helper: whether a partial file of snapshot `id` exists (a leftover, or a copy in progress). */
  hasPartial(snapshotDir: string, id: number): boolean {
    return this.partials.has(snapshotKey(snapshotDir, id));
  }

  /** Test helper: leave a half-written restore file next to `diskPath`, as a crash during a restore would. */
  markRestoreLeftover(diskPath: string): void {
    this.restoreFiles.set(diskPath, undefined);
  }

  /** Test helper: whether a half-written restore file exists next to `diskPath`. */
  hasRestoreLeftover(diskPath: string): boolean {
    return this.restoreFiles.has(diskPath);
  }

  /** Test helper: add a fault (see `FailureInjection`). Faults stack; they apply in the order added. */
  injectFailure(failure: FailureInjection): void {
    this.faults.inject(failure);
  }

  /** Test helper: remove every injected fault. Calls already delayed or hanging stay so. */
  clearFailures(): void {
    this.faults.clear();
  }

  /** Test helper: how many times `method` was called on this instance (whatever the outcome). */
  callCount(method: FakeInjectableMethod): number {
    return this.faults.callCount(method);
  }

  // ---------------------------------------------------------------- internals

  private count(method: FakeInjectableMethod): void {
    this.faults.count(method);
  }

  /** Counts the call, then applies the injected faults (the injection point of the non-copy methods). */
  private async intercept(method: FakeInjectableMethod, signal: AbortSignal | undefined): Promise<void> {
    this.count(method);
    await this.faults.apply(method, signal);
  }

  /**
   * The simulated copy: progress 0, the injection point (faults apply here, after the preconditions,
   * while the partial file exists), then `progressSteps` waits of `copyDelayMs / progressSteps` each
   * followed by a report, the last one 100. Rejects `cancelled` as soon as `signal` aborts, and checks
   * it once more before the caller commits.
   */
  private async copy(
    method: 'createSnapshot' | 'restoreSnapshot',
    report: (pct: number) => void,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    report(0);
    throwIfAborted(signal);
    await this.faults.apply(method, signal);
    const stepMs = this.copyDelayMs / this.progressSteps;
    for (let step = 1; step <= this.progressSteps; step++) {
      await sleep(stepMs, signal);
      report((step * 100) / this.progressSteps);
      throwIfAborted(signal);
    }
  }

  /** The domain the ref addresses: by its UUID, which must still belong to a domain of the ref's name. */
  private domainOf(server: ServerRef): FakeDomain {
    let domain = this.domains.get(server.domain);
    if (!domain) {
      if (!this.autoDefineDomains || this.undefinedNames.has(server.domain)) {
        throw fakeError('domain_not_found', `unknown domain ${server.domain}`);
      }
      this.defineDomain(server.domain, { diskPath: server.diskPath, running: false });
      domain = this.domains.get(server.domain) as FakeDomain;
    }
    if (server.domainUuid === null || server.domainUuid.toLowerCase() !== domain.uuid) {
      throw fakeError(
        'domain_not_found',
        `domain ${server.domain} has UUID ${domain.uuid}, the request names ${String(server.domainUuid)}`,
      );
    }
    if (domain.diskPath !== undefined && domain.diskPath !== server.diskPath) {
      throw diskMisplaced(
        `fake: domain ${server.domain} has disk ${domain.diskPath}, the request names ${server.diskPath}`,
      );
    }
    return domain;
  }

  private knownDomain(name: string): FakeDomain {
    const domain = this.domains.get(name);
    if (!domain) throw new Error(`FakeHypervisorDriver: domain "${name}" is not defined`);
    return domain;
  }
}
