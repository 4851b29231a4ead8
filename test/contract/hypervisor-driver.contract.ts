import { randomUUID } from 'node:crypto';
import * as path from 'node:path';

import {
  HypervisorDriver,
  HypervisorError,
  HYPERVISOR_ERROR_CODES,
  HypervisorErrorCode,
  ServerRef,
  SnapshotRef,
} from '../../src/hypervisor/hypervisor-driver';

/**
 * The contract suite every `HypervisorDriver` must pass (see `src/hypervisor/hypervisor-driver.ts` and
 * `docs/hypervisor-driver.md`). A driver's spec file calls `describeHypervisorDriverContract` with a
 * factory for a `DriverHarness`: the driver under test plus the few host-side operations the suite
 * needs to arrange and observe (write a disk, hash it, damage a snapshot, leave a crash leftover).
 *
 * A fresh harness is made for every test case and disposed after it, so cases do not depend on each
 * other. Timeouts are generous because the real driver copies real images.
 */
export interface DriverHarness {
  /** The driver under test. */
  readonly driver: HypervisorDriver;
  /**
   * The snapshot directory the suite stores snapshots in: empty, used by this harness only. Must be a
   * distinctive string (the suite checks that no error message contains it).
   */
  readonly snapshotDir: string;
  /**
   * A new server (domain + disk) known to the driver, in the requested power state, with a disk of
   * about `sizeMiB` MiB (default: the harness's choice; a fake may scale it down). Its domain name and
   * disk path must be distinctive strings. The guest must not write to its disk while running (test
   * domains boot no OS, or only read), so that "disk untouched" can be checked by digest. Its
   * `domainUuid` is the UUID the hypervisor gave the domain, learnt independently of the driver.
   */
  makeServer(opts: { running: boolean; sizeMiB?: number }): Promise<ServerRef>;
  /** Write `data` at byte `offset` of the guest-visible disk. The server is stopped. */
  writeDisk(server: ServerRef, offset: number, data: Buffer): Promise<void>;
  /**
   * A content hash of the guest-visible disk (for qcow2: of `qemu-img convert -O raw` output, or an
   * equivalent): equal for equal guest-visible content whatever the image layout.
   */
  diskDigest(server: ServerRef): Promise<string>;
  /** Optional: the same hash of the stored snapshot's guest-visible content, comparable to `diskDigest`. */
  snapshotDigest?(server: ServerRef, snap: SnapshotRef): Promise<string>;
  /** Damage the stored copy of a complete snapshot (truncate it) so that it no longer verifies. */
  corruptSnapshot(snap: SnapshotRef): Promise<void>;
  /** Leave a partial file for `snap`, as a crash in the middle of its creation would. */
  leavePartial(snap: SnapshotRef): Promise<void>;
  /** Remove everything the harness made (servers, disks, snapshot directory). */
  dispose(): Promise<void>;
  /**
   * The `forced` value `stop` must report for a running test server. Default false (a cooperative guest
   * that obeys ACPI/agent shutdown); true when the test domains run no guest that answers a shutdown
   * request, so the driver must fall back to a forced power-off after `stopGraceSeconds`.
   */
  readonly expectForcedStop?: boolean;
  /** `graceSeconds` the suite passes to `stop`. Default 1. */
  readonly stopGraceSeconds?: number;
}

/** Per-case timeout: the real driver boots domains and copies images. */
const CASE_TIMEOUT_MS = 180_000;

/** Snapshot ids: unique within a run, and unlikely to collide with leftovers of an earlier run. */
let nextSnapshotId = 1 + Math.floor(Math.random() * 1_000_000) * 1000;

export function describeHypervisorDriverContract(
  label: string,
  makeHarness: () => Promise<DriverHarness>,
): void {
  describe(`HypervisorDriver contract: ${label}`, () => {
    let h: DriverHarness;
    let driver: HypervisorDriver;

    beforeEach(async () => {
      h = await makeHarness();
      driver = h.driver;
    }, CASE_TIMEOUT_MS);

    afterEach(async () => {
      await h?.dispose();
    }, CASE_TIMEOUT_MS);

    const newSnap = (): SnapshotRef => ({ id: nextSnapshotId++, snapshotDir: h.snapshotDir });
    const graceSeconds = (): number => h.stopGraceSeconds ?? 1;
    const noProgress = (): void => undefined;

    /** Collects progress reports and checks the spec's rules on them. */
    const progressRecorder = (): { onProgress: (pct: number) => void; values: number[] } => {
      const values: number[] = [];
      return { values, onProgress: (pct) => values.push(pct) };
    };
    const expectValidProgress = (values: readonly number[]): void => {
      for (const [i, v] of values.entries()) {
        if (!(Number.isFinite(v) && v >= 0 && v <= 100))
          throw new Error(`progress value ${v} is outside [0, 100]`);
        if (i > 0 && v < values[i - 1]) throw new Error(`progress decreased: ${values.join(', ')}`);
      }
    };

    /**
     * Awaits `call`, which must reject with a `HypervisorError` of `code` whose customer-facing message
     * holds none of the platform details (snapshot directory, domain names, disk paths).
     */
    const expectHypervisorError = async (
      call: Promise<unknown>,
      code: HypervisorErrorCode,
      servers: readonly ServerRef[] = [],
    ): Promise<HypervisorError> => {
      let outcome: { ok: true; value: unknown } | { ok: false; error: unknown };
      try {
        outcome = { ok: true, value: await call };
      } catch (error) {
        outcome = { ok: false, error };
      }
      if (outcome.ok) throw new Error(`expected a HypervisorError "${code}", but the call succeeded`);
      const { error } = outcome;
      if (!(error instanceof HypervisorError)) {
        throw new Error(`expected a HypervisorError "${code}", got ${String(error)}`, { cause: error });
      }
      if (error.code !== code) {
        throw new Error(
          `expected code "${code}", got "${error.code}": ${error.message} (detail: ${error.detail ?? '-'})`,
        );
      }
      expectSafeMessage(error, servers);
      return error;
    };
    const expectSafeMessage = (error: HypervisorError, servers: readonly ServerRef[]): void => {
      const secrets = [h.snapshotDir, ...servers.flatMap((s) => [s.domain, s.diskPath])].filter(
        (s) => s !== '',
      );
      // The sentence is rendered from the catalogue, in each language, from the code it stores.
      for (const text of [error.message, error.messageIn('cy')]) {
        expect(text.length).toBeGreaterThan(0);
        for (const secret of secrets) {
          if (text.includes(secret)) {
            throw new Error(`error message "${text}" reveals the platform detail "${secret}"`);
          }
        }
      }
      expect(error.messageIn('en')).toBe(error.message);
      expect(HYPERVISOR_ERROR_CODES).toContain(error.code);
      expect(typeof error.retryable).toBe('boolean');
    };

    const missingServer = (): ServerRef => {
      const id = nextSnapshotId++;
      return {
        id,
        domain: `contract-missing-domain-${process.pid}-${id}`,
        domainUuid: randomUUID(),
        diskPath: path.join(path.dirname(h.snapshotDir), `contract-missing-disk-${process.pid}-${id}.qcow2`),
      };
    };

    /** A stopped server whose disk holds `fill` at offset 0, and its digest. */
    const serverWith = async (
      fill: string,
      sizeMiB?: number,
    ): Promise<{ server: ServerRef; digest: string }> => {
      const server = await h.makeServer({ running: false, sizeMiB });
      await h.writeDisk(server, 0, Buffer.alloc(64 * 1024, fill));
      return { server, digest: await h.diskDigest(server) };
    };

    // ------------------------------------------------------------------ power

    it(
      'reports the power state; start and stop are idempotent',
      async () => {
        const server = await h.makeServer({ running: false });
        expect(await driver.getPowerState(server)).toBe('stopped');
        expect(await driver.stop(server, { graceSeconds: graceSeconds() })).toEqual({ forced: false });
        expect(await driver.getPowerState(server)).toBe('stopped');

        await driver.start(server);
        expect(await driver.getPowerState(server)).toBe('running');
        await driver.start(server);
        expect(await driver.getPowerState(server)).toBe('running');

        await driver.stop(server, { graceSeconds: graceSeconds() });
        expect(await driver.getPowerState(server)).toBe('stopped');
        expect(await driver.stop(server, { graceSeconds: graceSeconds() })).toEqual({ forced: false });
        expect(await driver.getPowerState(server)).toBe('stopped');

        const running = await h.makeServer({ running: true });
        expect(await driver.getPowerState(running)).toBe('running');
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'stop of a running server reports whether the forced power-off was needed',
      async () => {
        const server = await h.makeServer({ running: true });
        const result = await driver.stop(server, { graceSeconds: graceSeconds() });
        expect(result).toEqual({ forced: h.expectForcedStop ?? false });
        expect(await driver.getPowerState(server)).toBe('stopped');
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'powerOff stops a running server at once; powerOff and shutdown of a stopped server do nothing',
      async () => {
        const server = await h.makeServer({ running: true });
        await driver.powerOff(server);
        expect(await driver.getPowerState(server)).toBe('stopped');
        await driver.powerOff(server);
        await driver.shutdown(server, { graceSeconds: graceSeconds() });
        expect(await driver.getPowerState(server)).toBe('stopped');
        const gone = missingServer();
        await expectHypervisorError(driver.powerOff(gone), 'domain_not_found', [gone]);
        await expectHypervisorError(driver.shutdown(gone, { graceSeconds: 1 }), 'domain_not_found', [gone]);
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'shutdown of a running server stops it when the guest obeys, else fails shutdown_timeout leaving it running',
      async () => {
        const server = await h.makeServer({ running: true });
        const call = driver.shutdown(server, { graceSeconds: graceSeconds() });
        if (h.expectForcedStop) {
          const e = await expectHypervisorError(call, 'shutdown_timeout', [server]);
          expect(e.retryable).toBe(false);
          expect(await driver.getPowerState(server)).toBe('running');
        } else {
          await call;
          expect(await driver.getPowerState(server)).toBe('stopped');
        }
        // Aborted before it starts: cancelled, and the server is left as it was.
        const running = await h.makeServer({ running: true });
        const abort = new AbortController();
        abort.abort();
        await expectHypervisorError(
          driver.shutdown(running, { graceSeconds: graceSeconds(), signal: abort.signal }),
          'cancelled',
          [running],
        );
        expect(await driver.getPowerState(running)).toBe('running');
      },
      CASE_TIMEOUT_MS,
    );

    // ------------------------------------------------------------------ identity

    it(
      "finds a domain's UUID by its exact name; an unknown name is domain_not_found",
      async () => {
        const server = await h.makeServer({ running: false });
        expect(await driver.findDomainUuid(server.domain)).toBe(server.domainUuid);
        await expectHypervisorError(driver.findDomainUuid(missingServer().domain), 'domain_not_found');
      },
      CASE_TIMEOUT_MS,
    );

    it(
      "addresses a domain by its UUID: a ref with another domain's, an unknown or no UUID is refused and changes nothing",
      async () => {
        const running = await h.makeServer({ running: true });
        const stopped = await h.makeServer({ running: false });
        const both = [running, stopped];
        // The stopped server's name with the running one's UUID: neither domain may be acted on.
        const crossed: ServerRef = { ...stopped, domainUuid: running.domainUuid };
        await expectHypervisorError(
          driver.stop(crossed, { graceSeconds: graceSeconds() }),
          'domain_not_found',
          both,
        );
        await expectHypervisorError(
          driver.getPowerState({ ...running, domainUuid: stopped.domainUuid }),
          'domain_not_found',
          both,
        );
        await expectHypervisorError(driver.start({ ...stopped, domainUuid: null }), 'domain_not_found', both);
        await expectHypervisorError(
          driver.start({ ...stopped, domainUuid: missingServer().domainUuid }),
          'domain_not_found',
          both,
        );
        const snap = newSnap();
        await expectHypervisorError(
          driver.createSnapshot(crossed, snap, noProgress),
          'domain_not_found',
          both,
        );
        expect(await driver.snapshotExists(snap)).toBe(false);
        expect(await driver.getPowerState(running)).toBe('running');
        expect(await driver.getPowerState(stopped)).toBe('stopped');
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'observes many servers in one call, in their order: running, stopped, and missing for an unknown, crossed or absent UUID',
      async () => {
        const running = await h.makeServer({ running: true });
        const stopped = await h.makeServer({ running: false });
        expect(await driver.observePowerStates([])).toEqual([]);
        expect(
          await driver.observePowerStates([
            stopped,
            running,
            missingServer(),
            { ...stopped, domainUuid: running.domainUuid },
            { ...running, domainUuid: null },
            stopped,
          ]),
        ).toEqual(['stopped', 'running', 'missing', 'missing', 'missing', 'stopped']);
        await driver.stop(running, { graceSeconds: graceSeconds() });
        await driver.start(stopped);
        expect(await driver.observePowerStates([running, stopped])).toEqual(['stopped', 'running']);
      },
      CASE_TIMEOUT_MS,
    );

    // ------------------------------------------------------------------ create

    it(
      'creates a snapshot of a stopped server: consistency "stopped", size, progress to 100',
      async () => {
        const { server, digest } = await serverWith('a');
        const snap = newSnap();
        expect(await driver.snapshotExists(snap)).toBe(false);
        const progress = progressRecorder();

        const result = await driver.createSnapshot(server, snap, progress.onProgress);

        expect(result.consistency).toBe('stopped');
        expect(Number.isSafeInteger(result.sizeBytes)).toBe(true);
        expect(result.sizeBytes).toBeGreaterThan(0);
        expect(await driver.snapshotExists(snap)).toBe(true);
        expectValidProgress(progress.values);
        expect(progress.values.at(-1)).toBe(100);
        expect(await driver.getPowerState(server)).toBe('stopped');
        expect(await h.diskDigest(server)).toBe(digest);
        if (h.snapshotDigest) expect(await h.snapshotDigest(server, snap)).toBe(digest);
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'a progress callback that throws does not fail the create',
      async () => {
        const { server } = await serverWith('t');
        const snap = newSnap();
        const values: number[] = [];
        const result = await driver.createSnapshot(server, snap, (pct) => {
          values.push(pct);
          throw new Error('listener bug');
        });
        expect(result.consistency).toBe('stopped');
        expect(await driver.snapshotExists(snap)).toBe(true);
        expectValidProgress(values);
        expect(values.at(-1)).toBe(100);
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'creates a snapshot of a running server only when it can copy live',
      async () => {
        const server = await h.makeServer({ running: true });
        const snap = newSnap();
        const progress = progressRecorder();
        const call = driver.createSnapshot(server, snap, progress.onProgress);

        if (driver.capabilities.liveSnapshot) {
          const result = await call;
          const allowed = driver.capabilities.quiesce
            ? ['quiesced', 'crash_consistent']
            : ['crash_consistent'];
          expect(allowed).toContain(result.consistency);
          expect(result.sizeBytes).toBeGreaterThan(0);
          expect(await driver.snapshotExists(snap)).toBe(true);
          expectValidProgress(progress.values);
          expect(progress.values.at(-1)).toBe(100);
        } else {
          await expectHypervisorError(call, 'invalid_power_state', [server]);
          expect(await driver.snapshotExists(snap)).toBe(false);
        }
        expect(await driver.getPowerState(server)).toBe('running');
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'refuses to overwrite a stored snapshot: snapshot_exists, and the stored copy is kept',
      async () => {
        const { server, digest } = await serverWith('a');
        const snap = newSnap();
        await driver.createSnapshot(server, snap, noProgress);
        await h.writeDisk(server, 0, Buffer.alloc(64 * 1024, 'b'));

        await expectHypervisorError(driver.createSnapshot(server, snap, noProgress), 'snapshot_exists', [
          server,
        ]);

        expect(await driver.snapshotExists(snap)).toBe(true);
        if (h.snapshotDigest) expect(await h.snapshotDigest(server, snap)).toBe(digest);
        await driver.restoreSnapshot(server, snap, noProgress);
        expect(await h.diskDigest(server)).toBe(digest);
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'fails with domain_not_found for an unknown domain (delete does not need the domain)',
      async () => {
        const ghost = missingServer();
        const snap = newSnap();
        await expectHypervisorError(driver.getPowerState(ghost), 'domain_not_found', [ghost]);
        await expectHypervisorError(driver.start(ghost), 'domain_not_found', [ghost]);
        await expectHypervisorError(
          driver.stop(ghost, { graceSeconds: graceSeconds() }),
          'domain_not_found',
          [ghost],
        );
        await expectHypervisorError(driver.createSnapshot(ghost, snap, noProgress), 'domain_not_found', [
          ghost,
        ]);
        expect(await driver.snapshotExists(snap)).toBe(false);

        const { server } = await serverWith('a');
        await driver.createSnapshot(server, snap, noProgress);
        await expectHypervisorError(driver.restoreSnapshot(ghost, snap, noProgress), 'domain_not_found', [
          ghost,
        ]);
        await driver.deleteSnapshot(ghost, snap);
        expect(await driver.snapshotExists(snap)).toBe(false);
      },
      CASE_TIMEOUT_MS,
    );

    // ------------------------------------------------------------------ restore

    it(
      'restores a snapshot: the disk is back to the content at snapshot time; repeating gives the same disk',
      async () => {
        const { server, digest: digestA } = await serverWith('a');
        const snap = newSnap();
        await driver.createSnapshot(server, snap, noProgress);
        await h.writeDisk(server, 0, Buffer.alloc(64 * 1024, 'b'));
        expect(await h.diskDigest(server)).not.toBe(digestA);
        const progress = progressRecorder();

        await driver.restoreSnapshot(server, snap, progress.onProgress);

        expect(await h.diskDigest(server)).toBe(digestA);
        expectValidProgress(progress.values);
        expect(await driver.snapshotExists(snap)).toBe(true);
        expect(await driver.getPowerState(server)).toBe('stopped');

        await h.writeDisk(server, 0, Buffer.alloc(64 * 1024, 'c'));
        await driver.restoreSnapshot(server, snap, noProgress);
        await driver.restoreSnapshot(server, snap, noProgress);
        expect(await h.diskDigest(server)).toBe(digestA);
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'refuses to restore onto a running server: invalid_power_state, disk untouched',
      async () => {
        const { server } = await serverWith('a');
        const snap = newSnap();
        await driver.createSnapshot(server, snap, noProgress);
        await h.writeDisk(server, 0, Buffer.alloc(64 * 1024, 'b'));
        const digestB = await h.diskDigest(server);
        await driver.start(server);

        await expectHypervisorError(driver.restoreSnapshot(server, snap, noProgress), 'invalid_power_state', [
          server,
        ]);

        expect(await driver.getPowerState(server)).toBe('running');
        await driver.stop(server, { graceSeconds: graceSeconds() });
        expect(await h.diskDigest(server)).toBe(digestB);
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'fails with snapshot_not_found for a snapshot never created, or only partially written',
      async () => {
        const { server, digest } = await serverWith('a');
        await expectHypervisorError(
          driver.restoreSnapshot(server, newSnap(), noProgress),
          'snapshot_not_found',
          [server],
        );
        const partial = newSnap();
        await h.leavePartial(partial);
        expect(await driver.snapshotExists(partial)).toBe(false);
        await expectHypervisorError(
          driver.restoreSnapshot(server, partial, noProgress),
          'snapshot_not_found',
          [server],
        );
        expect(await h.diskDigest(server)).toBe(digest);
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'refuses to restore a damaged snapshot: verification_failed, disk untouched',
      async () => {
        const { server } = await serverWith('a');
        const snap = newSnap();
        await driver.createSnapshot(server, snap, noProgress);
        await h.writeDisk(server, 0, Buffer.alloc(64 * 1024, 'b'));
        const digestB = await h.diskDigest(server);
        await h.corruptSnapshot(snap);

        await expectHypervisorError(driver.restoreSnapshot(server, snap, noProgress), 'verification_failed', [
          server,
        ]);

        expect(await h.diskDigest(server)).toBe(digestB);
      },
      CASE_TIMEOUT_MS,
    );

    // ------------------------------------------------------------------ delete

    it(
      'deletes idempotently: twice, a never-created id, and a partial file',
      async () => {
        const { server } = await serverWith('a');
        const snap = newSnap();
        await driver.createSnapshot(server, snap, noProgress);
        await driver.deleteSnapshot(server, snap);
        expect(await driver.snapshotExists(snap)).toBe(false);
        await driver.deleteSnapshot(server, snap);
        expect(await driver.snapshotExists(snap)).toBe(false);
        await expectHypervisorError(driver.restoreSnapshot(server, snap, noProgress), 'snapshot_not_found', [
          server,
        ]);

        await driver.deleteSnapshot(server, newSnap());

        const partial = newSnap();
        await h.leavePartial(partial);
        await driver.deleteSnapshot(server, partial);
        const { partialSnapshotIds } = await driver.cleanupInterrupted(h.snapshotDir, [server.diskPath]);
        expect(partialSnapshotIds).not.toContain(partial.id);

        // The id is free again.
        await driver.createSnapshot(server, snap, noProgress);
        expect(await driver.snapshotExists(snap)).toBe(true);
      },
      CASE_TIMEOUT_MS,
    );

    // ------------------------------------------------------------------ cancellation

    it(
      'rejects with cancelled when the signal is already aborted, leaving nothing',
      async () => {
        const { server, digest } = await serverWith('a');
        const snap = newSnap();
        await expectHypervisorError(
          driver.createSnapshot(server, snap, noProgress, { signal: AbortSignal.abort() }),
          'cancelled',
          [server],
        );
        expect(await driver.snapshotExists(snap)).toBe(false);

        await driver.createSnapshot(server, snap, noProgress);
        await h.writeDisk(server, 0, Buffer.alloc(64 * 1024, 'b'));
        const digestB = await h.diskDigest(server);
        expect(digestB).not.toBe(digest);
        await expectHypervisorError(
          driver.restoreSnapshot(server, snap, noProgress, { signal: AbortSignal.abort() }),
          'cancelled',
          [server],
        );
        expect(await h.diskDigest(server)).toBe(digestB);
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'aborting a create mid-copy rejects with cancelled and leaves nothing; the same id can be created again',
      async () => {
        const { server, digest } = await serverWith('a', 256);
        const snap = newSnap();
        const controller = new AbortController();
        const seen: number[] = [];

        // Abort from inside the first progress report: the copy has begun, and has not been committed.
        const call = driver.createSnapshot(
          server,
          snap,
          (pct) => {
            seen.push(pct);
            controller.abort();
          },
          { signal: controller.signal },
        );
        await expectHypervisorError(call, 'cancelled', [server]);

        expect(seen.length).toBeGreaterThan(0);
        expect(await driver.snapshotExists(snap)).toBe(false);
        const { partialSnapshotIds } = await driver.cleanupInterrupted(h.snapshotDir, [server.diskPath]);
        expect(partialSnapshotIds).not.toContain(snap.id);
        expect(await h.diskDigest(server)).toBe(digest);

        await driver.createSnapshot(server, snap, noProgress);
        expect(await driver.snapshotExists(snap)).toBe(true);
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'aborting a restore mid-copy rejects with cancelled and leaves the disk untouched',
      async () => {
        const { server } = await serverWith('a', 256);
        const snap = newSnap();
        await driver.createSnapshot(server, snap, noProgress);
        await h.writeDisk(server, 0, Buffer.alloc(64 * 1024, 'b'));
        const digestB = await h.diskDigest(server);
        const controller = new AbortController();

        const call = driver.restoreSnapshot(server, snap, () => controller.abort(), {
          signal: controller.signal,
        });
        await expectHypervisorError(call, 'cancelled', [server]);

        expect(await h.diskDigest(server)).toBe(digestB);
        expect(await driver.snapshotExists(snap)).toBe(true);
      },
      CASE_TIMEOUT_MS,
    );

    // ------------------------------------------------------------------ recovery

    it(
      'cleanupInterrupted removes partial snapshots, returns their ids, and leaves complete snapshots alone',
      async () => {
        const { server, digest } = await serverWith('a');
        const complete = newSnap();
        await driver.createSnapshot(server, complete, noProgress);
        const partials = [newSnap(), newSnap()];
        for (const p of partials) await h.leavePartial(p);

        const first = await driver.cleanupInterrupted(h.snapshotDir, [server.diskPath]);

        expect([...first.partialSnapshotIds].sort((a, b) => a - b)).toEqual(partials.map((p) => p.id));
        expect(await driver.snapshotExists(complete)).toBe(true);
        for (const p of partials) expect(await driver.snapshotExists(p)).toBe(false);
        expect(await h.diskDigest(server)).toBe(digest);

        const second = await driver.cleanupInterrupted(h.snapshotDir, [server.diskPath]);
        expect(second.partialSnapshotIds).toEqual([]);

        // The complete snapshot still restores, and the cleaned ids can be created.
        await h.writeDisk(server, 0, Buffer.alloc(64 * 1024, 'b'));
        await driver.restoreSnapshot(server, complete, noProgress);
        expect(await h.diskDigest(server)).toBe(digest);
        await driver.createSnapshot(server, partials[0], noProgress);
        expect(await driver.snapshotExists(partials[0])).toBe(true);
      },
      CASE_TIMEOUT_MS,
    );

    // ------------------------------------------------------------------ errors

    it(
      'errors are HypervisorErrors whose message reveals neither the snapshot directory nor the domain',
      async () => {
        const { server } = await serverWith('a');
        const ghost = missingServer();
        const snap = newSnap();
        await driver.createSnapshot(server, snap, noProgress);
        const errors: HypervisorError[] = [];

        errors.push(await expectHypervisorError(driver.getPowerState(ghost), 'domain_not_found', [ghost]));
        errors.push(
          await expectHypervisorError(driver.createSnapshot(server, snap, noProgress), 'snapshot_exists', [
            server,
          ]),
        );
        errors.push(
          await expectHypervisorError(
            driver.restoreSnapshot(server, newSnap(), noProgress),
            'snapshot_not_found',
            [server],
          ),
        );
        await driver.start(server);
        errors.push(
          await expectHypervisorError(
            driver.restoreSnapshot(server, snap, noProgress),
            'invalid_power_state',
            [server],
          ),
        );
        await driver.stop(server, { graceSeconds: graceSeconds() });
        await h.corruptSnapshot(snap);
        errors.push(
          await expectHypervisorError(
            driver.restoreSnapshot(server, snap, noProgress),
            'verification_failed',
            [server],
          ),
        );

        for (const error of errors) {
          expect(error).toBeInstanceOf(HypervisorError);
          expect(error.message.length).toBeGreaterThan(0);
          for (const secret of [
            h.snapshotDir,
            server.domain,
            server.diskPath,
            ghost.domain,
            ghost.diskPath,
          ]) {
            expect(error.message).not.toContain(secret);
          }
        }
      },
      CASE_TIMEOUT_MS,
    );
  });
}
