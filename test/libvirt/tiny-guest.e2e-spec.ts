import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

import { HypervisorError, ServerRef, SnapshotRef } from '../../src/hypervisor/hypervisor-driver';
import { LibvirtHypervisorDriver } from '../../src/hypervisor/libvirt/libvirt-hypervisor-driver';
import {
  describeLibvirt,
  domainUuid,
  domState,
  ensureTinyGuest,
  Lab,
  LIBVIRT_URI,
  run,
  virsh,
} from './support/lab';
import { fakeResult, ScriptedRunner, subcommand } from './support/scripted-runner';

jest.setTimeout(180_000);

/**
 * The tiny real Linux guest (scripts/guest/build-tiny-guest.sh) booted under TCG, writing files to its
 * ext4 disk all the time: quiesce through the QEMU guest agent, crash-consistent copies without it, and
 * graceful shutdown. Two guests are booted once for the whole file (one with the agent, one without).
 */
describeLibvirt('libvirt driver with the tiny real guest', () => {
  let lab: Lab;
  let withAgent: ServerRef;
  let withoutAgent: ServerRef;
  let serialA: string;
  let serialB: string;
  let snapshotDir: string;
  /** A small file system, mounted before the guests start: qemu runs in its own mount namespace. */
  let small: string;
  let nextId = 500 + Math.floor(Math.random() * 1_000_000) * 10;
  /** The lab's folder: the disks' image root. */
  let imageRoots: string[];
  let driver: LibvirtHypervisorDriver;
  const newSnap = (): SnapshotRef => ({ id: nextId++, snapshotDir });
  const snapFile = (s: SnapshotRef): string => path.join(s.snapshotDir, `${s.id}.qcow2`);

  beforeAll(async () => {
    const guestDir = await ensureTinyGuest();
    lab = await Lab.create('guest');
    imageRoots = [lab.dir];
    driver = new LibvirtHypervisorDriver({ uri: LIBVIRT_URI, imageRoots, pollIntervalMs: 100 });
    snapshotDir = await lab.mkdir('snapshots');
    small = await lab.mountTmpfs('tiny-tmpfs', 12);
    const nameA = lab.uniqueName('guest-agent');
    const nameB = lab.uniqueName('guest-noagent');
    // 24 MiB of data after the 64 MiB file system: a copy needs more room than the small tmpfs has.
    const diskA = await lab.makeExt4Disk(`${nameA}.qcow2`, 96, { fsMiB: 64, tailDataMiB: 24 });
    const diskB = await lab.makeExt4Disk(`${nameB}.qcow2`, 64);
    serialA = await lab.defineGuestDomain(nameA, diskA, guestDir, { agent: true, writer: 'vda' });
    serialB = await lab.defineGuestDomain(nameB, diskB, guestDir, { agent: false, writer: 'vda' });
    withAgent = { id: 1, domain: nameA, diskPath: diskA, domainUuid: await domainUuid(nameA) };
    withoutAgent = { id: 2, domain: nameB, diskPath: diskB, domainUuid: await domainUuid(nameB) };
    await Promise.all([driver.start(withAgent), driver.start(withoutAgent)]);
    await Promise.all([
      lab.waitForSerial(serialA, 'TINYGUEST READY', 120_000),
      lab.waitForSerial(serialB, 'TINYGUEST READY', 120_000),
    ]);
    await lab.waitForAgent(nameA, 60_000);
    // Both guests write to their ext4 disk.
    expect(await fsp.readFile(serialA, 'utf8')).toContain('TINYGUEST WRITER vda');
    expect(await fsp.readFile(serialB, 'utf8')).toContain('TINYGUEST WRITER vda');
  }, 300_000);

  afterAll(async () => {
    await lab?.dispose();
  });

  /** ext4 superblock features of the guest-visible content of a qcow2 image. */
  async function ext4Features(image: string, forceShare = false): Promise<string> {
    const raw = path.join(lab.dir, `sb-${nextId++}.raw`);
    try {
      await run('qemu-img', [
        'convert',
        ...(forceShare ? ['-U'] : []),
        '-f',
        'qcow2',
        '-O',
        'raw',
        image,
        raw,
      ]);
      const out = await run('dumpe2fs', ['-h', raw]);
      const line = out.split('\n').find((l) => l.startsWith('Filesystem features:'));
      if (!line) throw new Error(`no features line in dumpe2fs output:\n${out}`);
      return line;
    } finally {
      await fsp.rm(raw, { force: true });
    }
  }

  async function freezeStatus(domain: string): Promise<string> {
    const out = await virsh('qemu-agent-command', '--domain', domain, '{"execute":"guest-fsfreeze-status"}');
    return (JSON.parse(out) as { return: string }).return;
  }

  it('a live snapshot of the guest with its agent is quiesced: no needs_recovery in the copy', async () => {
    const snap = newSnap();
    const res = await driver.createSnapshot(withAgent, snap, () => undefined);

    expect(res.consistency).toBe('quiesced');
    expect(await ext4Features(snapFile(snap))).not.toMatch(/needs_recovery/);
    expect(await domState(withAgent.domain)).toBe('running');
    expect(await freezeStatus(withAgent.domain)).toBe('thawed');
    // The live disk of the writing guest, copied without freezing, does carry the flag: the check can
    // tell the two apart.
    expect(await ext4Features(withAgent.diskPath, true)).toMatch(/needs_recovery/);
  });

  it('the same guest without its agent gives a crash-consistent snapshot', async () => {
    const snap = newSnap();
    const res = await driver.createSnapshot(withoutAgent, snap, () => undefined);

    expect(res.consistency).toBe('crash_consistent');
    expect(await ext4Features(snapFile(snap))).toMatch(/needs_recovery/);
    expect(await domState(withoutAgent.domain)).toBe('running');
  });

  it('a frozen guest is thawed when the copy fails', async () => {
    const runner = new ScriptedRunner();
    let frozenDuringBegin = '';
    runner.intercept((_cmd, args) => {
      if (subcommand(args) !== 'backup-begin') return undefined;
      return (async () => {
        frozenDuringBegin = await freezeStatus(withAgent.domain);
        return fakeResult(1, '', 'error: internal error: injected backup failure\n');
      })();
    });
    const failing = new LibvirtHypervisorDriver({
      uri: LIBVIRT_URI,
      imageRoots,
      runner,
      pollIntervalMs: 100,
    });
    const snap = newSnap();

    const e = await failing.createSnapshot(withAgent, snap, () => undefined).catch((x: unknown) => x);

    expect(e).toBeInstanceOf(HypervisorError);
    expect((e as HypervisorError).code).toBe('copy_failed');
    expect(frozenDuringBegin).toBe('frozen');
    expect(await freezeStatus(withAgent.domain)).toBe('thawed');
    expect(await failing.snapshotExists(snap)).toBe(false);
    expect(await fsp.readdir(snapshotDir)).not.toContain(`${snap.id}.qcow2.partial`);
  });

  it('a frozen guest is thawed when the backup job itself fails (no space mid-copy)', async () => {
    const runner = new ScriptedRunner();
    runner.intercept((_cmd, args) =>
      subcommand(args) === 'measure' ? Promise.resolve(fakeResult(0, '{"required": 0}')) : undefined,
    );
    const failing = new LibvirtHypervisorDriver({
      uri: LIBVIRT_URI,
      imageRoots,
      runner,
      pollIntervalMs: 100,
    });
    const snap: SnapshotRef = { id: nextId++, snapshotDir: small };

    const e = await failing.createSnapshot(withAgent, snap, () => undefined).catch((x: unknown) => x);

    expect((e as HypervisorError).code).toBe('insufficient_storage');
    expect(await freezeStatus(withAgent.domain)).toBe('thawed');
    expect(await fsp.readdir(small)).toEqual([]);
  });

  it('a thaw the agent does not answer is retried until it does: the guest is not left frozen', async () => {
    // libvirt's answer when the agent misses its sync, as a busy guest's does; six in a row outlast
    // a handful of quick retries.
    const runner = new ScriptedRunner();
    let refusedThaws = 0;
    runner.intercept((_cmd, args) => {
      if (subcommand(args) !== 'domfsthaw' || refusedThaws >= 6) return undefined;
      refusedThaws++;
      return Promise.resolve(
        fakeResult(1, '', 'error: Guest agent is not responding: Guest agent not available for now\n'),
      );
    });
    const slowAgent = new LibvirtHypervisorDriver({
      uri: LIBVIRT_URI,
      imageRoots,
      runner,
      pollIntervalMs: 100,
    });
    const snap = newSnap();

    const res = await slowAgent.createSnapshot(withAgent, snap, () => undefined);

    expect(res.consistency).toBe('quiesced');
    expect(refusedThaws).toBe(6);
    expect(await freezeStatus(withAgent.domain)).toBe('thawed');
    expect(await ext4Features(snapFile(snap))).not.toMatch(/needs_recovery/);
  });

  it('a thaw still refused at its deadline fails the copy with the reason', async () => {
    const runner = new ScriptedRunner();
    runner.intercept((_cmd, args) =>
      subcommand(args) === 'domfsthaw'
        ? Promise.resolve(
            fakeResult(1, '', 'error: Guest agent is not responding: Guest agent not available for now\n'),
          )
        : undefined,
    );
    const stuck = new LibvirtHypervisorDriver({
      uri: LIBVIRT_URI,
      imageRoots,
      runner,
      pollIntervalMs: 100,
      thawDeadlineMs: 2_500,
    });
    const snap = newSnap();
    try {
      const e = await stuck.createSnapshot(withAgent, snap, () => undefined).catch((x: unknown) => x);

      expect((e as HypervisorError).code).toBe('hypervisor_error');
      expect((e as HypervisorError).detail).toMatch(/could not be thawed: .*not available for now/);
      expect(await freezeStatus(withAgent.domain)).toBe('frozen');
      expect(await stuck.snapshotExists(snap)).toBe(false);
    } finally {
      await virsh('domfsthaw', '--domain', withAgent.domain);
    }
    expect(await freezeStatus(withAgent.domain)).toBe('thawed');
  });

  it('stop shuts the guests down gracefully (agent, ACPI) without falling back to destroy', async () => {
    const [a, b] = await Promise.all([
      driver.stop(withAgent, { graceSeconds: 60 }),
      driver.stop(withoutAgent, { graceSeconds: 60 }),
    ]);
    expect(a).toEqual({ forced: false });
    expect(b).toEqual({ forced: false });
    expect(await driver.getPowerState(withAgent)).toBe('stopped');
    expect(await driver.getPowerState(withoutAgent)).toBe('stopped');
    // The guest's own power-off path ran: writer stopped, file systems unmounted cleanly.
    expect(await fsp.readFile(serialA, 'utf8')).toContain('TINYGUEST POWEROFF');
    expect(await fsp.readFile(serialB, 'utf8')).toContain('TINYGUEST POWEROFF');
    expect(await ext4Features(withAgent.diskPath)).not.toMatch(/needs_recovery/);
    expect(await ext4Features(withoutAgent.diskPath)).not.toMatch(/needs_recovery/);
  });
});
