import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

import { HypervisorError, ServerRef, SnapshotRef } from '../../src/hypervisor/hypervisor-driver';
import { readDomainDisk } from '../../src/hypervisor/libvirt/domain-inspector';
import {
  LibvirtDriverOptions,
  LibvirtHypervisorDriver,
} from '../../src/hypervisor/libvirt/libvirt-hypervisor-driver';
import { FileHasher } from '../../src/hypervisor/libvirt/files';
import { ProcessRunError, ProcessRunner } from '../../src/hypervisor/libvirt/process-runner';
import {
  describeLibvirt,
  domainUuid,
  domState,
  exists,
  Lab,
  LIBVIRT_URI,
  run,
  sha256OfFile,
  virsh,
} from './support/lab';
import { fakeResult, ScriptedRunner, subcommand } from './support/scripted-runner';

/**
 * The libvirt driver on real qcow2 images and real TCG domains (that boot no OS, so they never write
 * their disks): the failure modes the design doc calls silent and dangerous.
 */
jest.setTimeout(180_000);

describeLibvirt('libvirt driver on real images', () => {
  let lab: Lab;
  let nextId = 1000 + Math.floor(Math.random() * 1_000_000) * 10;
  const noProgress = (): void => undefined;

  beforeAll(async () => {
    lab = await Lab.create('driver');
  });
  afterAll(async () => {
    await lab?.dispose();
  });

  const driverWith = (o: Partial<LibvirtDriverOptions> = {}): LibvirtHypervisorDriver =>
    new LibvirtHypervisorDriver({ uri: LIBVIRT_URI, imageRoots: [lab.dir], pollIntervalMs: 100, ...o });

  /** A stopped domain whose disk holds `dataMiB` MiB of non-zero data (pattern `fill`). */
  async function server(
    opts: { sizeMiB?: number; dataMiB?: number; fill?: number } = {},
  ): Promise<ServerRef> {
    const domain = lab.uniqueName('drv');
    const diskPath = await lab.makeDisk(`${domain}.qcow2`, opts.sizeMiB ?? 64);
    const dataMiB = opts.dataMiB ?? 16;
    if (dataMiB > 0) {
      await run('qemu-io', ['-f', 'qcow2', '-c', `write -q -P ${opts.fill ?? 0x5a} 0 ${dataMiB}M`, diskPath]);
    }
    await lab.defineSimpleDomain(domain, diskPath);
    return { id: nextId, domain, diskPath, domainUuid: await domainUuid(domain) };
  }

  async function snapDir(name: string): Promise<string> {
    return lab.mkdir(`${name}-${nextId}`);
  }

  const newSnap = (snapshotDir: string): SnapshotRef => ({ id: nextId++, snapshotDir });
  const snapFile = (s: SnapshotRef): string => path.join(s.snapshotDir, `${s.id}.qcow2`);

  async function expectCode(p: Promise<unknown>, code: string): Promise<HypervisorError> {
    const e = await p.then(
      () => {
        throw new Error(`expected ${code}, but the call succeeded`);
      },
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(HypervisorError);
    expect((e as HypervisorError).code).toBe(code);
    return e as HypervisorError;
  }

  async function qemuImgCompare(a: string, b: string, forceShare = false): Promise<void> {
    // Exit 0: identical guest-visible content; 1: different (run() throws).
    await run('qemu-img', ['compare', ...(forceShare ? ['-U'] : []), '-f', 'qcow2', '-F', 'qcow2', a, b]);
  }

  async function listDir(dir: string): Promise<string[]> {
    return (await fsp.readdir(dir)).sort();
  }

  it('restore gives back a disk byte-identical to the snapshot point (qemu-img compare)', async () => {
    const driver = driverWith();
    const s = await server({ dataMiB: 24 });
    const dir = await snapDir('restore');
    const atSnapshot = path.join(lab.dir, `${s.domain}-at-snapshot.qcow2`);
    await fsp.copyFile(s.diskPath, atSnapshot);
    const snap = newSnap(dir);
    const progress: number[] = [];

    const res = await driver.createSnapshot(s, snap, (p) => progress.push(p));
    expect(res.consistency).toBe('stopped');
    expect(progress.at(-1)).toBe(100);
    // size = allocated bytes of the stored file, not the 64 MiB virtual size
    const info = JSON.parse(
      await run('qemu-img', ['info', '--output=json', '-f', 'qcow2', snapFile(snap)]),
    ) as {
      'actual-size': number;
    };
    expect(res.sizeBytes).toBe(info['actual-size']);
    expect(res.sizeBytes).toBeLessThan(40 * 1024 * 1024);
    expect(await listDir(dir)).toEqual([`${snap.id}.qcow2`, `${snap.id}.qcow2.json`]);

    await run('qemu-io', [
      '-f',
      'qcow2',
      '-c',
      'write -q -P 0x11 4M 8M',
      '-c',
      'write -q -P 0x22 40M 4M',
      s.diskPath,
    ]);
    await expect(qemuImgCompare(atSnapshot, s.diskPath)).rejects.toThrow();

    const restoreProgress: number[] = [];
    await driver.restoreSnapshot(s, snap, (p) => restoreProgress.push(p));
    await qemuImgCompare(atSnapshot, s.diskPath);
    await qemuImgCompare(snapFile(snap), s.diskPath);
    expect(restoreProgress.at(-1)).toBe(100);
    expect(await exists(`${s.diskPath}.restoring`)).toBe(false);
    // the domain still uses the (replaced) disk and starts from it
    await driver.start(s);
    expect(await driver.getPowerState(s)).toBe('running');
    await lab.destroyDomain(s.domain);
  });

  it('a live snapshot of a running TCG domain works and the domain keeps running', async () => {
    const driver = driverWith();
    const s = await server({ dataMiB: 32 });
    await driver.start(s);
    const dir = await snapDir('live');
    const snap = newSnap(dir);
    const progress: number[] = [];

    const res = await driver.createSnapshot(s, snap, (p) => progress.push(p));

    expect(res.consistency).toBe('crash_consistent'); // no guest agent in this domain
    expect(await domState(s.domain)).toBe('running');
    expect(progress.at(-1)).toBe(100);
    await qemuImgCompare(snapFile(snap), s.diskPath, true);
    expect(await listDir(dir)).toEqual([`${snap.id}.qcow2`, `${snap.id}.qcow2.json`]);
    // the stored file is owned by us and complete
    await run('qemu-img', ['check', '-q', '-f', 'qcow2', snapFile(snap)]);
    await lab.destroyDomain(s.domain);
  });

  it('zstd compression: stopped and live snapshots restore to the same content', async () => {
    const driver = driverWith({ compression: 'zstd' });
    const s = await server({ dataMiB: 16 });
    const dir = await snapDir('zstd');
    const stopped = newSnap(dir);
    await driver.createSnapshot(s, stopped, noProgress);
    const info = await run('qemu-img', ['info', '-f', 'qcow2', snapFile(stopped)]);
    expect(info).toMatch(/compression type: zstd/);

    await driver.start(s);
    const live = newSnap(dir);
    const progress: number[] = [];
    const res = await driver.createSnapshot(s, live, (p) => progress.push(p));
    expect(res.consistency).toBe('crash_consistent');
    expect(progress.at(-1)).toBe(100);
    expect(await listDir(dir)).toEqual(
      [stopped, live].flatMap((x) => [`${x.id}.qcow2`, `${x.id}.qcow2.json`]).sort(),
    );
    await driver.stop(s, { graceSeconds: 0 });

    const before = path.join(lab.dir, `${s.domain}-before.qcow2`);
    await fsp.copyFile(s.diskPath, before);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -q -P 0x33 0 1M', s.diskPath]);
    await driver.restoreSnapshot(s, live, noProgress);
    await qemuImgCompare(before, s.diskPath);
    // the restored disk itself is not compressed
    expect(await run('qemu-img', ['check', '-f', 'qcow2', s.diskPath])).toMatch(/0\.00% compressed/);
  });

  it('a too-small snapshot directory fails with insufficient_storage before writing anything', async () => {
    const driver = driverWith();
    const small = await lab.mountTmpfs(`tmpfs-small-${nextId}`, 8);
    const s = await server({ dataMiB: 24 });
    const snap = newSnap(small);

    const e = await expectCode(driver.createSnapshot(s, snap, noProgress), 'insufficient_storage');
    expect(e.message).not.toContain(small);
    expect(e.retryable).toBe(false);
    expect(await listDir(small)).toEqual([]);
    expect(await driver.snapshotExists(snap)).toBe(false);

    // running: same answer, and the domain is left running
    await driver.start(s);
    await expectCode(driver.createSnapshot(s, newSnap(small), noProgress), 'insufficient_storage');
    expect(await listDir(small)).toEqual([]);
    expect(await domState(s.domain)).toBe('running');
    await lab.destroyDomain(s.domain);
  });

  it('space running out mid-copy fails with insufficient_storage and removes the partial file', async () => {
    const runner = new ScriptedRunner();
    // Make the up-front check pass, so the copy itself runs into the full file system.
    runner.intercept((cmd, args) =>
      subcommand(args) === 'measure' ? Promise.resolve(fakeResult(0, '{"required": 0}')) : undefined,
    );
    const driver = driverWith({ runner });
    const small = await lab.mountTmpfs(`tmpfs-full-${nextId}`, 24);
    const s = await server({ dataMiB: 48 });
    // ... and for the byte copy of a shut-off disk, which also counts the disk file's allocated bytes.
    runner.intercept((cmd, args, _opts, real) =>
      subcommand(args) === 'info' && args.at(-1) === s.diskPath
        ? real().then((r) => ({ ...r, stdout: r.stdout.replace(/"actual-size": \d+/, '"actual-size": 0') }))
        : undefined,
    );
    const copies = countCopies(runner);

    const offline = newSnap(small);
    const e1 = await expectCode(driver.createSnapshot(s, offline, noProgress), 'insufficient_storage');
    expect(e1.detail).toMatch(/No space left on device/i);
    expect(copies.started()).toBe(1); // cp ran into the full file system
    expect(await listDir(small)).toEqual([]);

    await driver.start(s);
    const live = newSnap(small);
    await expectCode(driver.createSnapshot(s, live, noProgress), 'insufficient_storage');
    expect(await listDir(small)).toEqual([]);
    expect(await domState(s.domain)).toBe('running');
    // no backup job left behind on the domain
    expect(await virsh('domjobinfo', '--domain', s.domain)).toMatch(/Job type:\s+None/);
    await lab.destroyDomain(s.domain);
  });

  it('a truncated snapshot is refused on restore (even where qemu-img check passes) and the disk is untouched', async () => {
    const driver = driverWith();
    const s = await server({ dataMiB: 16 });
    const dir = await snapDir('trunc');
    const snap = newSnap(dir);
    await driver.createSnapshot(s, snap, noProgress);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -q -P 0x44 0 2M', s.diskPath]);
    const before = path.join(lab.dir, `${s.domain}-before.qcow2`);
    await fsp.copyFile(s.diskPath, before);
    const file = snapFile(snap);
    const size = (await fsp.stat(file)).size;

    // A cut of less than one cluster at the end: qemu-img check still passes and convert "works".
    await fsp.truncate(file, size - 4096);
    const check = await run('qemu-img', ['check', '-f', 'qcow2', file]).then(
      () => 'passes',
      () => 'fails',
    );
    await expectCode(driver.restoreSnapshot(s, snap, noProgress), 'verification_failed');
    await qemuImgCompare(before, s.diskPath);
    expect(await exists(`${s.diskPath}.restoring`)).toBe(false);

    // A large cut: check fails too.
    await fsp.truncate(file, Math.floor(size / 2));
    await expectCode(driver.restoreSnapshot(s, snap, noProgress), 'verification_failed');
    await qemuImgCompare(before, s.diskPath);

    // Same length, one byte flipped inside the data: only the manifest's sha256 sees it.
    const snap2 = newSnap(dir);
    await driver.createSnapshot(s, snap2, noProgress);
    const f2 = snapFile(snap2);
    const fh = await fsp.open(f2, 'r+');
    const at = (await fsp.stat(f2)).size - 100_000;
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0] ^= 0xff;
    await fh.write(b, 0, 1, at);
    await fh.close();
    await expectCode(driver.restoreSnapshot(s, snap2, noProgress), 'verification_failed');
    await qemuImgCompare(before, s.diskPath);

    // A snapshot file without its manifest is refused too.
    const snap3 = newSnap(dir);
    await driver.createSnapshot(s, snap3, noProgress);
    await fsp.rm(`${snapFile(snap3)}.json`);
    await expectCode(driver.restoreSnapshot(s, snap3, noProgress), 'verification_failed');
    await qemuImgCompare(before, s.diskPath);
    console.log(`qemu-img check on a snapshot cut by 4096 bytes: ${check}`);
  });

  /** Flips one byte in the middle of the file (same length); returns the offset. */
  async function flipMiddleByte(file: string): Promise<number> {
    const fh = await fsp.open(file, 'r+');
    try {
      const at = Math.floor((await fh.stat()).size / 2);
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, at);
      b[0] ^= 0x01;
      await fh.write(b, 0, 1, at);
      return at;
    } finally {
      await fh.close();
    }
  }

  /** A stopped server, a snapshot of it, then the disk changed (so a restore would change it back). */
  async function serverWithSnapshot(
    driver: LibvirtHypervisorDriver,
    o: { sizeMiB?: number; dataMiB?: number } = {},
  ): Promise<{ s: ServerRef; snap: SnapshotRef; restoring: string; diskSha: string }> {
    const s = await server({ dataMiB: o.dataMiB ?? 16, sizeMiB: o.sizeMiB });
    const snap = newSnap(await snapDir('concurrent'));
    await driver.createSnapshot(s, snap, noProgress);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -q -P 0x66 0 3M', s.diskPath]);
    return { s, snap, restoring: `${s.diskPath}.restoring`, diskSha: await sha256OfFile(s.diskPath) };
  }

  it('restore: an uncompressed snapshot is copied byte for byte (cp), a zstd one decompressed by qemu-img convert; both restore the content', async () => {
    const runner = new ScriptedRunner();
    const plain = await serverWithSnapshot(driverWith());
    const zstd = await serverWithSnapshot(driverWith({ compression: 'zstd' }));
    const copier = (restoring: string): string[] =>
      runner.calls
        .filter((c) => c.args.at(-1) === restoring && isCopy(c.cmd, c.args))
        .map((c) => `${c.cmd.split('/').pop()} ${subcommand(c.args)}`);

    await driverWith({ runner }).restoreSnapshot(plain.s, plain.snap, noProgress);
    expect(copier(plain.restoring)).toEqual(['cp ' + snapFile(plain.snap)]);
    // The restored disk is the snapshot file itself, byte for byte.
    expect(await sha256OfFile(plain.s.diskPath)).toBe(await sha256OfFile(snapFile(plain.snap)));
    await qemuImgCompare(snapFile(plain.snap), plain.s.diskPath);

    await driverWith({ runner }).restoreSnapshot(zstd.s, zstd.snap, noProgress);
    expect(copier(zstd.restoring)).toEqual(['qemu-img convert']);
    await qemuImgCompare(snapFile(zstd.snap), zstd.s.diskPath);
    const info = await run('qemu-img', ['info', zstd.s.diskPath]);
    expect(info).not.toMatch(/compressed/i); // decompressed: the disk's own writes stay plain
  });

  it('restore asks libvirt for the domain state once before its copy and once after it: the checkpoint clean-up after the swap does not ask again', async () => {
    const { s, snap } = await serverWithSnapshot(driverWith());
    const runner = new ScriptedRunner();
    await driverWith({ runner }).restoreSnapshot(s, snap, noProgress);
    const virsh = runner.calls
      .filter((c) => c.cmd.split('/').pop() === 'virsh')
      .map((c) => subcommand(c.args));
    // dominfo (state and name) before the copy, domstate after it, then the clean-up's record list.
    expect(virsh).toEqual(['dominfo', 'domstate', 'checkpoint-list']);
    expect(await sha256OfFile(s.diskPath)).toBe(await sha256OfFile(snapFile(snap)));
  });

  it('restore: the replaced disk is unlinked after the call returns; idle() waits for it, no .replaced remains', async () => {
    const driver = driverWith();
    const { s, snap } = await serverWithSnapshot(driver);
    const replaced = `${s.diskPath}.replaced`;
    await fsp.writeFile(replaced, 'left by a crash'); // a leftover second name does not stop a restore
    const oldDisk = await fsp.open(s.diskPath, 'r');
    try {
      await driver.restoreSnapshot(s, snap, noProgress);
      await driver.idle();
      expect((await oldDisk.stat()).nlink).toBe(0); // the old disk has no name left
      expect(await exists(replaced)).toBe(false);
      expect(await sha256OfFile(s.diskPath)).toBe(await sha256OfFile(snapFile(snap)));
      await driver.idle(); // nothing pending: resolves at once
    } finally {
      await oldDisk.close();
    }
  });

  it('restore: a byte flipped mid-snapshot is refused after the copy; the disk is untouched, no .restoring remains', async () => {
    const runner = new ScriptedRunner();
    const copies: Array<number | null> = [];
    const { s, snap, restoring, diskSha } = await serverWithSnapshot(driverWith());
    runner.intercept((cmd, args, _opts, real) => {
      if (args.at(-1) !== restoring || !isCopy(cmd, args)) return undefined;
      return real().then((r) => {
        copies.push(r.code);
        return r;
      });
    });
    await flipMiddleByte(snapFile(snap));
    const e = await expectCode(
      driverWith({ runner }).restoreSnapshot(s, snap, noProgress),
      'verification_failed',
    );
    expect(e.detail).toMatch(/sha256 of .* does not match the snapshot's manifest/);
    expect(copies).toEqual([0]); // the copy itself had succeeded: only the hash refused it
    expect(await sha256OfFile(s.diskPath)).toBe(diskSha);
    expect(await exists(restoring)).toBe(false);
  });

  it('restore: a hash mismatch stops the steps still running beside it, and the call ends after them', async () => {
    const runner = new ScriptedRunner();
    const { s, snap, restoring, diskSha } = await serverWithSnapshot(driverWith());
    await flipMiddleByte(snapFile(snap));
    const events: string[] = [];
    // The check of the copy never ends by itself: it waits for its signal.
    runner.intercept((_cmd, args, opts) => {
      if (subcommand(args) !== 'check' || args.at(-1) !== restoring) return undefined;
      return new Promise((_resolve, reject) => {
        opts.signal?.addEventListener('abort', () => {
          events.push('check stopped');
          reject(new ProcessRunError('aborted', 'qemu-img check', 'qemu-img was aborted'));
        });
      });
    });
    const e = await expectCode(
      driverWith({ runner }).restoreSnapshot(s, snap, noProgress),
      'verification_failed',
    );
    events.push('call ended');
    expect(e.detail).toMatch(/does not match the snapshot's manifest/);
    expect(events).toEqual(['check stopped', 'call ended']);
    expect(await exists(restoring)).toBe(false);
    expect(await sha256OfFile(s.diskPath)).toBe(diskSha);
  });

  it('restore: a copy failing on a damaged snapshot is verification_failed; on an intact one copy_failed', async () => {
    const runner = new ScriptedRunner();
    const driver = driverWith({ runner });
    const damaged = await serverWithSnapshot(driver);
    const intact = await serverWithSnapshot(driver);
    await flipMiddleByte(snapFile(damaged.snap));
    // The copy fails at once (as it would on an unreadable block of the snapshot).
    runner.intercept((cmd, args) =>
      args.at(-1)?.endsWith('.restoring') && isCopy(cmd, args)
        ? Promise.resolve(fakeResult(1, '', "cp: error reading 'x.qcow2': Input/output error"))
        : undefined,
    );
    await expectCode(driver.restoreSnapshot(damaged.s, damaged.snap, noProgress), 'verification_failed');
    const e = await expectCode(driver.restoreSnapshot(intact.s, intact.snap, noProgress), 'copy_failed');
    expect(e.retryable).toBe(true);
    for (const x of [damaged, intact]) {
      expect(await exists(x.restoring)).toBe(false);
      expect(await sha256OfFile(x.s.diskPath)).toBe(x.diskSha);
    }
  });

  it('restore: aborting mid-copy stops the copy, keeps the disk and leaves no .restoring', async () => {
    const hashes: string[] = [];
    class WatchingHasher extends FileHasher {
      override async sha256(
        file: string,
        opts: { signal?: AbortSignal; onBytes?: (n: number) => void } = {},
      ): Promise<{ sha256: string; bytes: number }> {
        hashes.push(file);
        return super.sha256(file, opts);
      }
    }
    const runner = new ScriptedRunner();
    const driver = driverWith({ runner, hasher: new WatchingHasher() });
    const { s, snap, restoring, diskSha } = await serverWithSnapshot(driver, { sizeMiB: 512, dataMiB: 384 });
    hashes.length = 0;
    const ac = new AbortController();
    const copy = abortOnceCopying(runner, restoring, ac);
    await expectCode(driver.restoreSnapshot(s, snap, noProgress, { signal: ac.signal }), 'cancelled');
    expect(copy.pidAtAbort()).not.toBeNull(); // the copy was running when the abort came
    expect(copierWriting(restoring)).toBeNull();
    expect(hashes).toEqual([]); // the hash runs after the copy: it never started
    expect(await exists(restoring)).toBe(false);
    expect(await sha256OfFile(s.diskPath)).toBe(diskSha);
  });

  /** A qemu-io that opens `disk` for writing and writes 64 KiB: its exit code and stderr. */
  const tryWrite = (disk: string): Promise<{ code: number | null; stderr: string }> =>
    new ProcessRunner().run('qemu-io', ['-f', 'qcow2', '-c', 'write -q 0 64k', disk], { timeoutMs: 30_000 });

  it('create: a plain shut-off disk is copied byte for byte (cp) while qemu-io holds its image lock', async () => {
    const runner = new ScriptedRunner();
    const s = await server({ dataMiB: 24 });
    const diskSha = await sha256OfFile(s.diskPath);
    const whileCopying: Array<{ code: number | null; stderr: string }> = [];
    runner.intercept((cmd, args, _opts, real) => {
      if (!isCopy(cmd, args)) return undefined;
      return tryWrite(s.diskPath).then((w) => {
        whileCopying.push(w);
        return real();
      });
    });
    const snap = newSnap(await snapDir('create-cp'));

    const res = await driverWith({ runner }).createSnapshot(s, snap, noProgress);
    expect(res.consistency).toBe('stopped');
    const copies = runner.calls.filter((c) => isCopy(c.cmd, c.args));
    expect(copies.map((c) => c.cmd)).toEqual(['cp']);
    expect(copies[0].args.slice(-2)).toEqual([s.diskPath, `${snapFile(snap)}.partial`]);
    // While cp ran, nothing could open the disk for writing (a domain start included).
    expect(whileCopying).toHaveLength(1);
    expect(whileCopying[0].code).not.toBe(0);
    expect(whileCopying[0].stderr).toMatch(/Failed to get "write" lock/);
    // The snapshot is the disk file, byte for byte; the lock is gone afterwards.
    expect(await sha256OfFile(snapFile(snap))).toBe(diskSha);
    await qemuImgCompare(snapFile(snap), s.diskPath);
    expect((await tryWrite(s.diskPath)).code).toBe(0);
  });

  it('create: a disk with an internal snapshot or a bitmap, or zstd, goes through qemu-img convert', async () => {
    const runner = new ScriptedRunner();
    const withSnapshot = await server({ dataMiB: 8 });
    await run('qemu-img', ['snapshot', '-c', 'kept-by-someone', withSnapshot.diskPath]);
    const withBitmap = await server({ dataMiB: 8 });
    await run('qemu-img', ['bitmap', '--add', withBitmap.diskPath, 'b1']);
    const plain = await server({ dataMiB: 8 });
    const dir = await snapDir('create-convert');
    const copier = (): string[] => runner.calls.filter((c) => isCopy(c.cmd, c.args)).map((c) => c.cmd);

    for (const [s, driver] of [
      [withSnapshot, driverWith({ runner })],
      [withBitmap, driverWith({ runner })],
      [plain, driverWith({ runner, compression: 'zstd' })],
    ] as const) {
      runner.calls.length = 0;
      const snap = newSnap(dir);
      await driver.createSnapshot(s, snap, noProgress);
      expect(copier()).toEqual(['qemu-img']);
      await qemuImgCompare(snapFile(snap), s.diskPath);
      const info = JSON.parse(await run('qemu-img', ['info', '--output=json', snapFile(snap)])) as Record<
        string,
        unknown
      > & { 'format-specific': { data: Record<string, unknown> } };
      expect(info.snapshots).toBeUndefined(); // what convert leaves out stays out
      expect(info['format-specific'].data.bitmaps).toBeUndefined();
    }
  });

  it('create: a disk with leaked clusters is still byte-copied (leaks are harmless); its snapshot restores through convert', async () => {
    const runner = new ScriptedRunner();
    const driver = driverWith({ runner });
    const s = await server({ dataMiB: 8 });
    // Leaks without damage: an internal snapshot raises every cluster's refcount, then the header's
    // snapshot count (4 bytes at offset 60) is zeroed — the clusters stay counted but unreferenced.
    await run('qemu-img', ['snapshot', '-c', 'forgotten', s.diskPath]);
    const header = await fsp.open(s.diskPath, 'r+');
    await header.write(Buffer.alloc(4), 0, 4, 60);
    await header.close();
    await expect(run('qemu-img', ['check', '-f', 'qcow2', s.diskPath])).rejects.toThrow(
      /failed \(3\): Leaked cluster/,
    ); // exit 3: leaks only
    const diskSha = await sha256OfFile(s.diskPath);
    const snap = newSnap(await snapDir('create-leaks'));
    const copiers = (): string[] => runner.calls.filter((c) => isCopy(c.cmd, c.args)).map((c) => c.cmd);

    await driver.createSnapshot(s, snap, noProgress);
    expect(copiers()).toEqual(['cp']);
    expect(await sha256OfFile(snapFile(snap))).toBe(diskSha);

    runner.calls.length = 0;
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -q -P 0x66 0 3M', s.diskPath]);
    await driver.restoreSnapshot(s, snap, noProgress);
    expect(copiers()).toEqual(['qemu-img']); // a snapshot with leaks is not byte-copied into a disk
    await qemuImgCompare(snapFile(snap), s.diskPath);
    await run('qemu-img', ['check', '-f', 'qcow2', s.diskPath]); // the restored disk has no leaks
  });

  it('create: a shut-off disk that another qemu has open for writing is invalid_power_state, nothing written', async () => {
    const s = await server({ dataMiB: 8 });
    const dir = await snapDir('create-held');
    const holder = new AbortController();
    let opened: () => void = () => undefined;
    const open = new Promise<void>((resolve) => (opened = resolve));
    // A qemu-io with the disk open for writing: it prints the length once it holds the lock.
    const holding = new ProcessRunner()
      .run('stdbuf', ['-oL', 'qemu-io', '-f', 'qcow2', '-c', 'length', '-c', 'sleep 60000', s.diskPath], {
        timeoutMs: 90_000,
        signal: holder.signal,
        onStdout: () => opened(),
      })
      .then(
        (r) => r,
        () => undefined,
      );
    try {
      const r = await Promise.race([open.then(() => 'open' as const), holding]);
      expect(r).toBe('open'); // not ended before it held the disk
      await expectCode(driverWith().createSnapshot(s, newSnap(dir), noProgress), 'invalid_power_state');
      expect(await listDir(dir)).toEqual([]);
    } finally {
      holder.abort();
      await holding;
    }
  });

  it('create: a lock holder that dies during the byte copy fails the copy (copy_failed), nothing kept', async () => {
    const runner = new ScriptedRunner();
    const s = await server({ dataMiB: 8 });
    const dir = await snapDir('create-lost-lock');
    let killed: number | null = null;
    runner.intercept((cmd, args, _opts, real) => {
      if (!isCopy(cmd, args)) return undefined;
      killed = processWith('qemu-io', s.diskPath);
      if (killed !== null) process.kill(killed, 'SIGKILL'); // a writer could start from here on
      return real();
    });
    const e = await expectCode(
      driverWith({ runner }).createSnapshot(s, newSnap(dir), noProgress),
      'copy_failed',
    );
    expect(killed).not.toBeNull();
    expect(e.detail).toMatch(/image lock .* ended before its copy did/);
    expect(await listDir(dir)).toEqual([]);
  });

  it('create: a worker killed during the byte copy does not leave the disk locked', async () => {
    const s = await server({ dataMiB: 8 });
    const dir = await snapDir('create-die');
    const worker = spawn(
      process.execPath,
      [
        '-r',
        'ts-node/register/transpile-only',
        path.join(__dirname, 'support', 'create-then-die.ts'),
        LIBVIRT_URI,
        s.domain,
        s.domainUuid!,
        s.diskPath,
        dir,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((resolve, reject) => {
        worker.stdout.on('data', (d: Buffer) => String(d).includes('copying') && resolve());
        worker.on('exit', (code) => reject(new Error(`the worker exited (${code}) before copying`)));
      });
      expect((await tryWrite(s.diskPath)).stderr).toMatch(/Failed to get "write" lock/); // held
    } finally {
      worker.kill('SIGKILL');
    }
    // The lock holder reads its commands from the dead worker's pipe: it ends with it.
    let w = await tryWrite(s.diskPath);
    for (let i = 0; i < 50 && w.code !== 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      w = await tryWrite(s.diskPath);
    }
    expect(w).toMatchObject({ code: 0 });
  });

  it('create: aborting the byte copy stops cp, releases the image lock and leaves nothing', async () => {
    const runner = new ScriptedRunner();
    const s = await server({ sizeMiB: 512, dataMiB: 384 });
    const snap = newSnap(await snapDir('create-abort'));
    const partial = `${snapFile(snap)}.partial`;
    const ac = new AbortController();
    const copy = abortOnceCopying(runner, partial, ac);
    await expectCode(
      driverWith({ runner }).createSnapshot(s, snap, noProgress, { signal: ac.signal }),
      'cancelled',
    );
    expect(copy.pidAtAbort()).not.toBeNull();
    expect(copierWriting(partial)).toBeNull();
    expect(await listDir(snap.snapshotDir)).toEqual([]);
    expect((await tryWrite(s.diskPath)).code).toBe(0); // the lock holder is gone too
  });

  it('create: a plain disk is hashed while cp copies it, under its lock; no pass over the copy; the manifest matches the snapshot', async () => {
    const runner = new ScriptedRunner();
    const s = await server({ dataMiB: 24 });
    const snap = newSnap(await snapDir('create-hash'));
    const events: string[] = [];
    const lockedWhileHashing: boolean[] = [];
    class WatchingHasher extends FileHasher {
      override async sha256(
        file: string,
        opts: { signal?: AbortSignal } = {},
      ): Promise<{ sha256: string; bytes: number }> {
        events.push(`hash ${path.basename(file)}`);
        const hashed = super.sha256(file, opts);
        lockedWhileHashing.push(/write" lock/.test((await tryWrite(s.diskPath)).stderr));
        return hashed;
      }
    }
    runner.intercept((cmd, args, _opts, real) => {
      if (!isCopy(cmd, args)) return undefined;
      events.push('cp started');
      return real().finally(() => events.push('cp ended'));
    });
    await driverWith({ runner, hasher: new WatchingHasher() }).createSnapshot(s, snap, noProgress);
    const hashes = events.filter((e) => e.startsWith('hash'));
    expect(hashes).toEqual([`hash ${path.basename(s.diskPath)}`]);
    expect(events.indexOf(hashes[0])).toBeLessThan(events.indexOf('cp ended')); // at once, not after
    expect(lockedWhileHashing).toEqual([true]);
    const manifest = JSON.parse(await fsp.readFile(`${snapFile(snap)}.json`, 'utf8')) as {
      sha256: string;
      bytes: number;
    };
    expect(manifest.sha256).toBe(await sha256OfFile(snapFile(snap)));
    expect(manifest.bytes).toBe((await fsp.stat(snapFile(snap))).size);
  });

  it('create: a byte copy longer than what was hashed is verification_failed, nothing kept', async () => {
    const runner = new ScriptedRunner();
    const s = await server({ dataMiB: 8 });
    const dir = await snapDir('create-longer');
    runner.intercept((cmd, args, _opts, real) => {
      if (!isCopy(cmd, args)) return undefined;
      // Bytes past the image's end: qemu-img check still passes, only the length gives it away.
      return real().then(async (r) => {
        await fsp.appendFile(args.at(-1)!, Buffer.alloc(4096, 0x5a));
        return r;
      });
    });
    const e = await expectCode(
      driverWith({ runner }).createSnapshot(s, newSnap(dir), noProgress),
      'verification_failed',
    );
    expect(e.detail).toMatch(/is not what was hashed \(\d+ bytes hashed, \d+ checked\)/);
    expect(await listDir(dir)).toEqual([]);
  });

  it('create: a byte copy that differs from the disk is refused at restore (the manifest holds the hash of the disk); the disk is untouched', async () => {
    const runner = new ScriptedRunner();
    const s = await server({ dataMiB: 16 });
    const snap = newSnap(await snapDir('create-differs'));
    runner.intercept((cmd, args, _opts, real) => {
      if (!isCopy(cmd, args) || args.at(-1) !== `${snapFile(snap)}.partial`) return undefined;
      return real().then(async (r) => {
        await flipMiddleByte(args.at(-1)!);
        return r;
      });
    });
    await driverWith({ runner }).createSnapshot(s, snap, noProgress);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -q -P 0x66 0 3M', s.diskPath]);
    const diskSha = await sha256OfFile(s.diskPath);
    const e = await expectCode(driverWith().restoreSnapshot(s, snap, noProgress), 'verification_failed');
    expect(e.detail).toMatch(/does not match the snapshot's manifest/);
    expect(await sha256OfFile(s.diskPath)).toBe(diskSha);
    expect(await exists(`${s.diskPath}.restoring`)).toBe(false);
  });

  it('create: a check failing while the sha256 pass runs stops the pass, and the call ends after it', async () => {
    const runner = new ScriptedRunner();
    const s = await server({ dataMiB: 16 });
    const dir = await snapDir('together');
    const snap = newSnap(dir);
    const partial = `${snapFile(snap)}.partial`;
    const events: string[] = [];
    class StuckHasher extends FileHasher {
      override sha256(file: string, opts: { signal?: AbortSignal } = {}): Promise<never> {
        events.push(`hash ${path.basename(file)}`);
        return new Promise((_resolve, reject) => {
          opts.signal?.addEventListener('abort', () => {
            setTimeout(() => {
              events.push('hash stopped');
              const err = new Error('hashing aborted');
              err.name = 'AbortError';
              reject(err);
            }, 50);
          });
        });
      }
    }
    runner.intercept((_cmd, args) =>
      subcommand(args) === 'check' && args.at(-1) === partial
        ? Promise.resolve(fakeResult(2, '{"corruptions": 1}', 'ERROR cluster 5 refcount=0 reference=1'))
        : undefined,
    );
    const driver = driverWith({ runner, hasher: new StuckHasher() });
    const e = await expectCode(driver.createSnapshot(s, snap, noProgress), 'verification_failed');
    events.push('call ended');
    expect(e.detail).toMatch(/qemu-img check exit 2/);
    // A plain disk is hashed while cp copies it, and the check of the copy follows cp.
    expect(events).toEqual([`hash ${path.basename(s.diskPath)}`, 'hash stopped', 'call ended']);
    expect(await listDir(dir)).toEqual([]);
    expect(await driver.snapshotExists(snap)).toBe(false);
  });

  it.each([
    ['cp', 'none'],
    ['qemu-img convert', 'zstd'],
  ] as const)(
    'a %s killed mid-copy leaves no partial file and a failed, repeatable snapshot',
    async (_copier, compression) => {
      const driver = driverWith({ compression });
      const s = await server({ sizeMiB: 512, dataMiB: 384 });
      const dir = await snapDir('killed');
      const snap = newSnap(dir);
      const partial = `${snapFile(snap)}.partial`;
      let killed: number | null = null;

      const call = driver.createSnapshot(s, snap, (pct) => {
        if (killed === null && pct > 0 && pct < 90) killed = killCopierWriting(partial);
      });
      const e = await expectCode(call, 'copy_failed');
      expect(killed).not.toBeNull();
      expect(e.retryable).toBe(true);
      expect(await exists(partial)).toBe(false);
      expect(await listDir(dir)).toEqual([]);
      expect(await driver.snapshotExists(snap)).toBe(false);

      await driver.createSnapshot(s, snap, noProgress);
      await qemuImgCompare(snapFile(snap), s.diskPath);
      await run('qemu-io', ['-f', 'qcow2', '-c', 'write -q 0 64k', s.diskPath]); // no lock left behind
    },
  );

  it('aborting a live copy aborts the libvirt backup job and leaves nothing', async () => {
    const driver = driverWith();
    const s = await server({ sizeMiB: 512, dataMiB: 384 });
    await driver.start(s);
    const dir = await snapDir('abort-live');
    const ac = new AbortController();
    const snap = newSnap(dir);
    const call = driver.createSnapshot(
      s,
      snap,
      (pct) => {
        if (pct > 0) ac.abort();
      },
      { signal: ac.signal },
    );
    await expectCode(call, 'cancelled');
    expect(await listDir(dir)).toEqual([]);
    expect(await virsh('domjobinfo', '--domain', s.domain)).toMatch(/Job type:\s+None/);
    expect(await domState(s.domain)).toBe('running');
    await lab.destroyDomain(s.domain);
  });

  it('limits concurrent disk copies to maxConcurrentCopies', async () => {
    const runner = new ScriptedRunner();
    const driver = driverWith({ runner, maxConcurrentCopies: 1 });
    const dir = await snapDir('sem');
    const servers = await Promise.all([
      server({ dataMiB: 32 }),
      server({ dataMiB: 32 }),
      server({ dataMiB: 32 }),
    ]);
    const copies = countCopies(runner);
    await Promise.all(servers.map((s) => driver.createSnapshot(s, newSnap(dir), noProgress)));
    expect(copies.started()).toBe(3);
    expect(copies.maxAtOnce()).toBe(1);

    const runner2 = new ScriptedRunner();
    const copies2 = countCopies(runner2);
    const driver2 = driverWith({ runner: runner2, maxConcurrentCopies: 2 });
    await Promise.all(servers.map((s) => driver2.createSnapshot(s, newSnap(dir), noProgress)));
    expect(copies2.started()).toBe(3);
    expect(copies2.maxAtOnce()).toBeLessThanOrEqual(2);
  });

  it('readDomainDisk reads the disk of a defined domain; unknown domains are domain_not_found', async () => {
    const s = await server({ dataMiB: 0 });
    expect(await readDomainDisk(new ProcessRunner(), LIBVIRT_URI, s.domain)).toEqual({
      diskPath: s.diskPath,
      format: 'qcow2',
    });
    await expectCode(
      readDomainDisk(new ProcessRunner(), LIBVIRT_URI, `${s.domain}-missing`),
      'domain_not_found',
    );
  });

  it('cleanupInterrupted removes .partial/.stage/orphan manifests and .restoring/.replaced files only', async () => {
    const driver = driverWith();
    const s = await server({ dataMiB: 1 });
    const dir = await snapDir('cleanup');
    const good = newSnap(dir);
    await driver.createSnapshot(s, good, noProgress);
    const ids = [nextId++, nextId++, nextId++];
    await fsp.writeFile(path.join(dir, `${ids[0]}.qcow2.partial`), 'x');
    await fsp.writeFile(path.join(dir, `${ids[1]}.qcow2.json`), '{}');
    await fsp.writeFile(path.join(dir, `${ids[2]}.qcow2.stage`), 'x');
    await fsp.writeFile(path.join(dir, 'unrelated.txt'), 'keep');
    await fsp.writeFile(`${s.diskPath}.restoring`, 'x');
    await fsp.link(s.diskPath, `${s.diskPath}.replaced`); // a crash between link and rename
    const diskSha = await sha256OfFile(s.diskPath);

    const r = await driver.cleanupInterrupted(dir, [s.diskPath]);
    expect(r.partialSnapshotIds).toEqual(ids);
    expect(await listDir(dir)).toEqual([`${good.id}.qcow2`, `${good.id}.qcow2.json`, 'unrelated.txt'].sort());
    expect(await exists(`${s.diskPath}.restoring`)).toBe(false);
    expect(await exists(`${s.diskPath}.replaced`)).toBe(false);
    expect(await sha256OfFile(s.diskPath)).toBe(diskSha);
    expect(await driver.cleanupInterrupted(path.join(dir, 'missing'), [])).toEqual({
      partialSnapshotIds: [],
    });
  });
});

/** Finds the cp or qemu-img process writing `partial` (through /proc) and SIGKILLs it; returns its pid. */
function killCopierWriting(partial: string): number | null {
  // Synchronous on purpose: called from a progress callback while the copy runs.
  const pid = copierWriting(partial);
  if (pid !== null) process.kill(pid, 'SIGKILL');
  return pid;
}

/** Counts the disk copies (cp, qemu-img convert) a runner starts, and how many ran at once. */
function countCopies(runner: ScriptedRunner): { started: () => number; maxAtOnce: () => number } {
  let active = 0;
  let started = 0;
  let max = 0;
  runner.intercept((cmd, args, _opts, real) => {
    if (!isCopy(cmd, args)) return undefined;
    started++;
    max = Math.max(max, ++active);
    return real().finally(() => active--);
  });
  return { started: () => started, maxAtOnce: () => max };
}

/** Aborts `ac` as soon as the copy (cp / qemu-img convert) into `target` exists as a process. */
function abortOnceCopying(
  runner: ScriptedRunner,
  target: string,
  ac: AbortController,
): { pidAtAbort: () => number | null } {
  let pid: number | null = null;
  runner.intercept((cmd, args, _opts, real) => {
    if (args.at(-1) !== target || !isCopy(cmd, args)) return undefined;
    const p = real();
    setImmediate(() => {
      pid = copierWriting(target);
      ac.abort();
    });
    return p;
  });
  return { pidAtAbort: () => pid };
}

/** A disk copy: `cp` or `qemu-img convert`. */
function isCopy(cmd: string, args: readonly string[]): boolean {
  return cmd.endsWith('cp') || subcommand(args) === 'convert';
}

/** The pid of a qemu-img or cp process that has `file` among its arguments. */
function copierWriting(file: string): number | null {
  return processWith('qemu-img', file) ?? processWith('cp', file);
}

/** The pid of a process whose program name ends with `program` and that has `file` among its arguments. */
function processWith(program: string, file: string): number | null {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fs = require('node:fs') as typeof import('node:fs');
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let cmdline: string;
    try {
      cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    const argv = cmdline.split('\0');
    if (argv[0].endsWith(program) && argv.includes(file)) return Number(entry);
  }
  return null;
}
