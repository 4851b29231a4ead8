import { HypervisorError, ServerRef, SnapshotRef } from '../hypervisor-driver';
import {
  FAKE_AUTO_DISK_BYTES,
  FakeHypervisorDriver,
  fakeDiskContent,
  fakeDomainUuid,
} from './fake-hypervisor-driver';
import { parseFakeDriverEnv, parseFakeDriverFailures } from './fake-driver-env';

const DIR = '/srv/snapshots';
const server: ServerRef = {
  id: 1,
  domain: 'vm-1',
  diskPath: '/srv/disks/vm-1.qcow2',
  domainUuid: fakeDomainUuid('vm-1'),
};
const snap = (id: number): SnapshotRef => ({ id, snapshotDir: DIR });
const noProgress = (): void => undefined;

async function rejection(call: Promise<unknown>): Promise<HypervisorError> {
  try {
    await call;
  } catch (e) {
    if (e instanceof HypervisorError) return e;
    throw new Error(`expected a HypervisorError, got ${String(e)}`);
  }
  throw new Error('expected a rejection, but the call succeeded');
}

function withDomain(
  options: ConstructorParameters<typeof FakeHypervisorDriver>[0] = {},
): FakeHypervisorDriver {
  const driver = new FakeHypervisorDriver(options);
  driver.defineDomain(server.domain, { diskPath: server.diskPath, diskBytes: Buffer.from('disk-A') });
  return driver;
}

describe('FakeHypervisorDriver', () => {
  describe('basics', () => {
    it('has the default capabilities and name', () => {
      const driver = new FakeHypervisorDriver();
      expect(driver.name).toBe('fake');
      expect(driver.capabilities).toEqual({ liveSnapshot: true, quiesce: false });
      expect(new FakeHypervisorDriver({ capabilities: { quiesce: true } }).capabilities).toEqual({
        liveSnapshot: true,
        quiesce: true,
      });
    });

    it('reports sizeBytes as the disk length, or the configured value', async () => {
      expect((await withDomain().createSnapshot(server, snap(1), noProgress)).sizeBytes).toBe(6);
      expect(
        (await withDomain({ snapshotSizeBytes: 12345 }).createSnapshot(server, snap(1), noProgress))
          .sizeBytes,
      ).toBe(12345);
    });

    it('copies running servers point-in-time: later guest writes are not in the snapshot', async () => {
      const driver = withDomain({ copyDelayMs: 20 });
      driver.setPowerState(server.domain, 'running');
      const call = driver.createSnapshot(server, snap(1), noProgress);
      driver.writeDisk(server.domain, Buffer.from('disk-B'));
      expect(await call).toEqual({ sizeBytes: 6, consistency: 'crash_consistent' });
      expect(driver.readSnapshot(DIR, 1)?.toString()).toBe('disk-A');
    });

    it('spreads copyDelayMs over the progress steps, reporting 0, …, 100', async () => {
      const driver = withDomain({ copyDelayMs: 200, progressSteps: 4 });
      const seen: Array<[number, number]> = [];
      const started = Date.now();
      await driver.createSnapshot(server, snap(1), (pct) => seen.push([pct, Date.now() - started]));
      expect(seen.map(([pct]) => pct)).toEqual([0, 25, 50, 75, 100]);
      expect(seen[4][1]).toBeGreaterThanOrEqual(190);
      expect(seen[1][1]).toBeGreaterThanOrEqual(40);
    });

    it('writes at an offset, growing the disk when needed', () => {
      const driver = withDomain();
      driver.writeDisk(server.domain, Buffer.from('XY'), 1);
      expect(driver.readDisk(server.domain).toString()).toBe('dXYk-A');
      driver.writeDisk(server.domain, Buffer.from('Z'), 8);
      expect(driver.readDisk(server.domain)).toEqual(Buffer.from('dXYk-A\0\0Z'));
    });

    it('refuses a ServerRef whose disk path differs from the defined one', async () => {
      const driver = withDomain();
      const err = await rejection(driver.getPowerState({ ...server, diskPath: '/elsewhere.qcow2' }));
      expect(err.code).toBe('hypervisor_error');
      expect(err.retryable).toBe(false);
      expect(err.message).not.toContain('/elsewhere');
    });

    it('refuses a second concurrent create of the same snapshot id', async () => {
      const driver = withDomain({ copyDelayMs: 50 });
      const first = driver.createSnapshot(server, snap(1), noProgress);
      const err = await rejection(driver.createSnapshot(server, snap(1), noProgress));
      expect(err.code).toBe('hypervisor_error');
      expect(err.retryable).toBe(true);
      await first;
      expect(await driver.snapshotExists(snap(1))).toBe(true);
    });

    it('fails a create whose partial file was removed by cleanupInterrupted mid-copy', async () => {
      const driver = withDomain({ copyDelayMs: 50 });
      const call = driver.createSnapshot(server, snap(1), noProgress);
      expect(driver.hasPartial(DIR, 1)).toBe(true);
      expect(await driver.cleanupInterrupted(DIR, [])).toEqual({ partialSnapshotIds: [1] });
      expect((await rejection(call)).code).toBe('copy_failed');
      expect(await driver.snapshotExists(snap(1))).toBe(false);
    });

    it('treats equivalent spellings of a snapshot directory as the same directory', async () => {
      const driver = withDomain();
      await driver.createSnapshot(server, { id: 1, snapshotDir: '/srv/snapshots/' }, noProgress);
      expect(await driver.snapshotExists({ id: 1, snapshotDir: '/srv//snapshots' })).toBe(true);
    });

    it('cleanupInterrupted removes restore leftovers of the given disks only', async () => {
      const driver = withDomain();
      driver.markRestoreLeftover(server.diskPath);
      driver.markRestoreLeftover('/srv/disks/other.qcow2');
      driver.markPartial('/srv/other-snapshots', 7);
      expect(await driver.cleanupInterrupted(DIR, [server.diskPath])).toEqual({ partialSnapshotIds: [] });
      expect(driver.hasRestoreLeftover(server.diskPath)).toBe(false);
      expect(driver.hasRestoreLeftover('/srv/disks/other.qcow2')).toBe(true);
      expect(driver.hasPartial('/srv/other-snapshots', 7)).toBe(true);
    });

    it('a progress callback that throws does not fail the copy (the shared progress guard drops it)', async () => {
      const driver = withDomain();
      const seen: number[] = [];
      const result = await driver.createSnapshot(server, snap(1), (pct) => {
        seen.push(pct);
        throw new Error('callback bug');
      });
      expect(result.consistency).toBe('stopped');
      expect(seen).toEqual([0, 25, 50, 75, 100]);
      expect(driver.hasPartial(DIR, 1)).toBe(false);
      expect(driver.readSnapshot(DIR, 1)).toBeDefined();
    });

    it('test helpers throw a plain Error for an undefined domain', () => {
      const driver = new FakeHypervisorDriver();
      expect(() => driver.readDisk('nope')).toThrow('domain "nope" is not defined');
      expect(() => driver.setPowerState('nope', 'running')).toThrow('not defined');
    });

    it('rejects invalid options', () => {
      expect(() => new FakeHypervisorDriver({ copyDelayMs: -1 })).toThrow('copyDelayMs');
      expect(() => new FakeHypervisorDriver({ progressSteps: 0 })).toThrow('progressSteps');
    });
  });

  describe('auto-defined domains', () => {
    it('are off by default', async () => {
      expect((await rejection(new FakeHypervisorDriver().getPowerState(server))).code).toBe(
        'domain_not_found',
      );
    });

    it('are defined stopped, with a deterministic disk derived from the name', async () => {
      const a = new FakeHypervisorDriver({ autoDefineDomains: true });
      const b = new FakeHypervisorDriver({ autoDefineDomains: true });
      expect(await a.getPowerState(server)).toBe('stopped');
      await b.createSnapshot(server, snap(1), noProgress);
      expect(a.readDisk(server.domain)).toEqual(b.readDisk(server.domain));
      expect(a.readDisk(server.domain)).toEqual(fakeDiskContent(server.domain));
      expect(a.readDisk(server.domain)).toHaveLength(FAKE_AUTO_DISK_BYTES);
      expect(fakeDiskContent('vm-2')).not.toEqual(fakeDiskContent('vm-1'));
    });

    it('get the same UUID in every process, found by name', async () => {
      const a = new FakeHypervisorDriver({ autoDefineDomains: true });
      expect(await a.findDomainUuid('vm-9')).toBe(fakeDomainUuid('vm-9'));
      expect(fakeDomainUuid('vm-9')).toMatch(
        /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}$/,
      );
      expect(fakeDomainUuid('vm-9')).not.toBe(fakeDomainUuid('vm-8'));
    });
  });

  describe('domain UUIDs', () => {
    it("a ref is refused when its UUID is not its domain's, or missing", async () => {
      const driver = new FakeHypervisorDriver({ autoDefineDomains: true });
      driver.defineDomain('vm-2', { running: true });
      for (const domainUuid of [fakeDomainUuid('vm-2'), null, '00000000-0000-4000-8000-000000000000']) {
        expect((await rejection(driver.stop({ ...server, domainUuid }, { graceSeconds: 0 }))).code).toBe(
          'domain_not_found',
        );
      }
      expect(driver.readDisk('vm-2')).toBeDefined();
      expect(
        await driver.getPowerState({ ...server, domain: 'vm-2', domainUuid: fakeDomainUuid('vm-2') }),
      ).toBe('running');
    });

    it('findDomainUuid of an unknown name is domain_not_found without auto-definition', async () => {
      expect((await rejection(new FakeHypervisorDriver().findDomainUuid('vm-1'))).code).toBe(
        'domain_not_found',
      );
    });
  });

  describe('failure injection', () => {
    it('fail_nth fails the n-th matching call once, with the default code', async () => {
      const driver = withDomain();
      driver.injectFailure({ method: 'createSnapshot', mode: 'fail_nth', n: 2 });
      await driver.createSnapshot(server, snap(1), noProgress);
      const err = await rejection(driver.createSnapshot(server, snap(2), noProgress));
      expect(err.code).toBe('copy_failed');
      expect(err.retryable).toBe(true);
      expect(driver.hasPartial(DIR, 2)).toBe(false);
      expect(await driver.snapshotExists(snap(2))).toBe(false);
      await driver.createSnapshot(server, snap(2), noProgress);
      expect(driver.callCount('createSnapshot')).toBe(3);
    });

    it('counts only calls that reach the copy for create/restore (precondition failures do not count)', async () => {
      const driver = withDomain();
      driver.injectFailure({ method: 'restoreSnapshot', mode: 'fail_nth', n: 1 });
      expect((await rejection(driver.restoreSnapshot(server, snap(9), noProgress))).code).toBe(
        'snapshot_not_found',
      );
      await driver.createSnapshot(server, snap(1), noProgress);
      driver.writeDisk(server.domain, Buffer.from('disk-B'));
      expect((await rejection(driver.restoreSnapshot(server, snap(1), noProgress))).code).toBe('copy_failed');
      expect(driver.readDisk(server.domain).toString()).toBe('disk-B');
      await driver.restoreSnapshot(server, snap(1), noProgress);
      expect(driver.readDisk(server.domain).toString()).toBe('disk-A');
    });

    it('fail_always with a custom error, on any method with "*"; clearFailures removes it', async () => {
      const driver = withDomain();
      const error = new HypervisorError('insufficient_storage');
      driver.injectFailure({ method: '*', mode: 'fail_always', error });
      expect(await rejection(driver.getPowerState(server))).toBe(error);
      expect(await rejection(driver.start(server))).toBe(error);
      expect(await rejection(driver.stop(server, { graceSeconds: 1 }))).toBe(error);
      expect(await rejection(driver.createSnapshot(server, snap(1), noProgress))).toBe(error);
      expect(await rejection(driver.deleteSnapshot(server, snap(1)))).toBe(error);
      driver.clearFailures();
      expect(await driver.getPowerState(server)).toBe('stopped');
    });

    it('non-copy methods fail with hypervisor_error by default', async () => {
      const driver = withDomain();
      driver.injectFailure({ method: 'stop', mode: 'fail_always' });
      const err = await rejection(driver.stop(server, { graceSeconds: 1 }));
      expect(err.code).toBe('hypervisor_error');
      expect(await driver.getPowerState(server)).toBe('stopped');
    });

    it('delay postpones the call, and is abortable', async () => {
      const driver = withDomain();
      driver.injectFailure({ method: 'start', mode: 'delay', ms: 60 });
      const started = Date.now();
      await driver.start(server);
      expect(Date.now() - started).toBeGreaterThanOrEqual(55);

      driver.clearFailures();
      driver.injectFailure({ method: 'createSnapshot', mode: 'delay', ms: 60_000 });
      const controller = new AbortController();
      const call = driver.createSnapshot(server, snap(1), noProgress, { signal: controller.signal });
      setTimeout(() => controller.abort(), 10);
      expect((await rejection(call)).code).toBe('cancelled');
      expect(driver.hasPartial(DIR, 1)).toBe(false);
    });

    it('hang waits for the signal, leaving the partial visible meanwhile (a crash in the middle)', async () => {
      const driver = withDomain();
      driver.injectFailure({ method: 'createSnapshot', mode: 'hang' });
      const controller = new AbortController();
      const progress: number[] = [];
      const call = driver.createSnapshot(server, snap(1), (p) => progress.push(p), {
        signal: controller.signal,
      });
      await new Promise((r) => setTimeout(r, 20));
      expect(progress).toEqual([0]);
      expect(driver.hasPartial(DIR, 1)).toBe(true);
      expect(await driver.snapshotExists(snap(1))).toBe(false);
      controller.abort();
      expect((await rejection(call)).code).toBe('cancelled');
      expect(driver.hasPartial(DIR, 1)).toBe(false);
    });

    it('hang without a signal never settles', async () => {
      const driver = withDomain();
      driver.injectFailure({ method: 'getPowerState', mode: 'hang' });
      const outcome = await Promise.race([
        driver.getPowerState(server).then(() => 'settled'),
        new Promise((r) => setTimeout(() => r('pending'), 30)),
      ]);
      expect(outcome).toBe('pending');
    });

    it('rejects malformed injections', () => {
      const driver = new FakeHypervisorDriver();
      expect(() => driver.injectFailure({ method: 'createSnapshot', mode: 'fail_nth', n: 0 })).toThrow(
        'positive',
      );
      expect(() => driver.injectFailure({ method: 'start', mode: 'delay', ms: 1.5 })).toThrow('non-negative');
      expect(() =>
        driver.injectFailure({ method: 'snapshotExists' as 'start', mode: 'fail_always' }),
      ).toThrow('unknown method');
    });
    it('backup reads and disk rebuilds can be made to fail: nothing is read, written or checkpointed', async () => {
      const driver = withDomain();
      driver.injectFailure({ method: 'openBackupRead', mode: 'fail_nth', n: 1 });
      driver.injectFailure({ method: 'restoreDiskFrom', mode: 'fail_always' });
      const read = await rejection(
        driver.openBackupRead(server, { since: null, checkpoint: 'vps-backup-1' }),
      );
      expect(read.code).toBe('hypervisor_error');
      expect(driver.checkpointNames(server.domain)).toEqual([]);
      let filled = false;
      const rebuild = await rejection(
        driver.restoreDiskFrom(server, 4096, async () => void (filled = true), noProgress),
      );
      expect(rebuild.code).toBe('copy_failed');
      expect(filled).toBe(false);
      expect(driver.readDisk(server.domain).toString()).toBe('disk-A');
      expect(driver.callCount('openBackupRead')).toBe(1);
      const session = await driver.openBackupRead(server, { since: null, checkpoint: 'vps-backup-2' });
      await session.close({ keepCheckpoint: true });
      expect(driver.checkpointNames(server.domain)).toEqual(['vps-backup-2']);
    });

    it('a crash makes every checkpoint untrustworthy; a restore from a backup drops them', async () => {
      const driver = withDomain();
      const first = await driver.openBackupRead(server, { since: null, checkpoint: 'vps-backup-1' });
      await first.close({ keepCheckpoint: true });
      driver.crashCheckpoints(server.domain);
      const after = await driver.openBackupRead(server, {
        since: 'vps-backup-1',
        checkpoint: 'vps-backup-2',
      });
      expect(after.fullReason).toBe('bitmap_inconsistent');
      await after.close({ keepCheckpoint: true });
      await driver.restoreDiskFrom(
        server,
        8,
        async (disk) => disk.write(0, Buffer.from('rebuilt!')),
        noProgress,
      );
      expect(driver.readDisk(server.domain).toString()).toBe('rebuilt!');
      expect(driver.checkpointNames(server.domain)).toEqual([]);
    });
  });

  describe('environment', () => {
    it('builds with auto-defined domains and no faults from an empty environment', async () => {
      const driver = FakeHypervisorDriver.fromEnv({});
      expect(await driver.getPowerState(server)).toBe('stopped');
      expect(driver.capabilities).toEqual({ liveSnapshot: true, quiesce: false });
    });

    it('reads every knob', async () => {
      expect(
        parseFakeDriverEnv({
          FAKE_DRIVER_DELAY_MS: ' 250 ',
          FAKE_DRIVER_FAIL:
            'createSnapshot:fail_nth:2, *:delay:5,restoreSnapshot:fail_always:insufficient_storage,stop:hang',
          FAKE_DRIVER_LIVE_SNAPSHOT: 'false',
          FAKE_DRIVER_QUIESCE: '1',
          FAKE_DRIVER_AUTO_DEFINE: '0',
          UNRELATED: 'x',
        }),
      ).toEqual({
        copyDelayMs: 250,
        failures: [
          { method: 'createSnapshot', mode: 'fail_nth', n: 2 },
          { method: '*', mode: 'delay', ms: 5 },
          { method: 'restoreSnapshot', mode: 'fail_always', error: expect.any(HypervisorError) },
          { method: 'stop', mode: 'hang' },
        ],
        capabilities: { liveSnapshot: false, quiesce: true },
        autoDefineDomains: false,
      });
      const [storage] = parseFakeDriverFailures('restoreSnapshot:fail_always:insufficient_storage');
      expect(storage).toMatchObject({ error: { code: 'insufficient_storage', retryable: false } });
    });

    it('ignores blank values', () => {
      expect(parseFakeDriverEnv({ FAKE_DRIVER_FAIL: '', FAKE_DRIVER_DELAY_MS: '  ' })).toEqual({});
    });

    it('applies the faults of the environment', async () => {
      const driver = FakeHypervisorDriver.fromEnv({ FAKE_DRIVER_FAIL: 'createSnapshot:fail_nth:2' });
      await driver.createSnapshot(server, snap(1), noProgress);
      expect((await rejection(driver.createSnapshot(server, snap(2), noProgress))).code).toBe('copy_failed');
      await driver.createSnapshot(server, snap(2), noProgress);

      const always = FakeHypervisorDriver.fromEnv({
        FAKE_DRIVER_FAIL: 'createSnapshot:fail_always:copy_failed',
      });
      for (const id of [1, 2]) {
        expect((await rejection(always.createSnapshot(server, snap(id), noProgress))).code).toBe(
          'copy_failed',
        );
      }
    });

    it('lets explicit overrides win over the environment', () => {
      const driver = FakeHypervisorDriver.fromEnv(
        { FAKE_DRIVER_LIVE_SNAPSHOT: 'true' },
        { capabilities: { liveSnapshot: false } },
      );
      expect(driver.capabilities.liveSnapshot).toBe(false);
    });

    it.each([
      [{ FAKE_DRIVER_DELAY_MS: '-5' }, 'Invalid FAKE_DRIVER_DELAY_MS="-5": expected a non-negative integer'],
      [{ FAKE_DRIVER_DELAY_MS: '1.5' }, 'Invalid FAKE_DRIVER_DELAY_MS'],
      [{ FAKE_DRIVER_DELAY_MS: '10ms' }, 'Invalid FAKE_DRIVER_DELAY_MS'],
      [{ FAKE_DRIVER_FAIL: 'createSnapshot' }, 'unknown mode ""'],
      [{ FAKE_DRIVER_FAIL: 'createSnapshot:explode' }, 'unknown mode "explode"'],
      [{ FAKE_DRIVER_FAIL: 'snapshotExists:fail_always' }, 'unknown method "snapshotExists"'],
      [{ FAKE_DRIVER_FAIL: 'createSnapshot:fail_nth' }, 'fail_nth needs an integer ≥ 1, got nothing'],
      [{ FAKE_DRIVER_FAIL: 'createSnapshot:fail_nth:0' }, 'fail_nth needs an integer ≥ 1, got "0"'],
      [{ FAKE_DRIVER_FAIL: 'createSnapshot:fail_nth:two' }, 'got "two"'],
      [{ FAKE_DRIVER_FAIL: 'start:delay' }, 'delay needs an integer ≥ 0'],
      [{ FAKE_DRIVER_FAIL: 'start:delay:5:copy_failed' }, 'unexpected "copy_failed"'],
      [{ FAKE_DRIVER_FAIL: 'start:hang:5' }, 'unexpected "5"'],
      [{ FAKE_DRIVER_FAIL: 'start:fail_always:oops' }, 'unknown error code "oops"'],
      [{ FAKE_DRIVER_FAIL: 'start:fail_always:copy_failed:x' }, 'unexpected "x"'],
      [{ FAKE_DRIVER_FAIL: 'start:hang,,stop:hang' }, 'empty entry'],
      [{ FAKE_DRIVER_FAIL: 'start:hang,' }, 'empty entry'],
      [
        { FAKE_DRIVER_LIVE_SNAPSHOT: 'yes' },
        'Invalid FAKE_DRIVER_LIVE_SNAPSHOT="yes": expected true, false, 1 or 0',
      ],
      [{ FAKE_DRIVER_QUIESCE: 'TRUE' }, 'Invalid FAKE_DRIVER_QUIESCE'],
      [{ FAKE_DRIVER_AUTO_DEFINE: 'no' }, 'Invalid FAKE_DRIVER_AUTO_DEFINE'],
      [{ FAKE_DRIVER_FIAL: 'start:hang' }, 'Unknown environment variable FAKE_DRIVER_FIAL'],
    ])('rejects malformed %j', (env, message) => {
      expect(() => parseFakeDriverEnv(env)).toThrow(message);
      expect(() => FakeHypervisorDriver.fromEnv(env)).toThrow(message);
    });

    it('names the variable and the whole value in FAKE_DRIVER_FAIL errors', () => {
      expect(() => parseFakeDriverEnv({ FAKE_DRIVER_FAIL: 'start:hang,stop:boom' })).toThrow(
        'Invalid FAKE_DRIVER_FAIL="start:hang,stop:boom": entry "stop:boom": unknown mode "boom"',
      );
    });
  });
});
