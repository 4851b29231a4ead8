import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { isHypervisorError, ServerRef } from '../../src/hypervisor/hypervisor-driver';
import { LibvirtHypervisorDriver } from '../../src/hypervisor/libvirt/libvirt-hypervisor-driver';
import { ProcessRunner } from '../../src/hypervisor/libvirt/process-runner';
import { describeLibvirt, domainUuid, Lab, LIBVIRT_URI, run, virsh } from './support/lab';

/**
 * Backup reads on real domains, beyond the shared contract: a live incremental read of clusters
 * written while the domain was off, a crash of a running domain's qemu followed by a restart (libvirt
 * refuses the incremental job: redone full), the image lock that keeps a stopped domain from starting
 * while it is read, and the one checkpoint (record and bitmap) a kept read leaves.
 */
jest.setTimeout(300_000);

const KIB = 1024;
const MIB = 1024 * KIB;
const CLUSTER = 64 * KIB;

describeLibvirt('libvirt driver: backup reads on real domains', () => {
  let lab: Lab;
  let driver: LibvirtHypervisorDriver;
  let n = 0;
  const cp = (): string => `vps-backup-${process.pid}${++n}`;

  beforeAll(async () => {
    lab = await Lab.create('backup');
    driver = new LibvirtHypervisorDriver({ uri: LIBVIRT_URI, imageRoots: [lab.dir], pollIntervalMs: 100 });
  });
  afterAll(async () => {
    await lab?.dispose();
  });

  async function server(running: boolean): Promise<ServerRef> {
    const domain = lab.uniqueName('bkp');
    const diskPath = await lab.makeDisk(`${domain}.qcow2`, 16);
    await lab.writeDisk(diskPath, 0, Buffer.alloc(MIB, 0x5a));
    await lab.defineSimpleDomain(domain, diskPath);
    if (running) await virsh('start', '--domain', domain);
    return { id: ++n, domain, diskPath, domainUuid: await domainUuid(domain) };
  }

  const checkpoints = async (s: ServerRef): Promise<string[]> =>
    (await virsh('checkpoint-list', '--domain', s.domain, '--name'))
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '');

  const bitmaps = async (s: ServerRef): Promise<string[]> => {
    const info = JSON.parse(await run('qemu-img', ['info', '-U', '--output=json', s.diskPath])) as {
      'format-specific'?: { data?: { bitmaps?: Array<{ name: string }> } };
    };
    return (info['format-specific']?.data?.bitmaps ?? []).map((b) => b.name).sort();
  };

  it('a live incremental read has exactly the clusters written while the domain was off', async () => {
    const s = await server(true);
    const cp1 = cp();
    const full = await driver.openBackupRead(s, { since: null, checkpoint: cp1 });
    expect(full.extents).toEqual([{ offset: 0, length: MIB }]);
    await full.close({ keepCheckpoint: true });
    await virsh('destroy', '--domain', s.domain);
    await lab.writeDisk(s.diskPath, 9 * MIB + 5, Buffer.from('changed'));
    await virsh('start', '--domain', s.domain);

    const inc = await driver.openBackupRead(s, { since: cp1, checkpoint: cp() });
    expect(inc.mode).toBe('incremental');
    expect(inc.consistency).toBe('crash_consistent');
    expect(inc.extents).toEqual([{ offset: 9 * MIB, length: CLUSTER }]);
    expect((await inc.read(9 * MIB + 5, 7)).toString()).toBe('changed');
    await inc.close({ keepCheckpoint: true });
    expect(await checkpoints(s)).toEqual([inc.checkpoint]);
  });

  it('after qemu is killed under a running domain and restarted, the read is full (bitmap_inconsistent) and then incremental again', async () => {
    const s = await server(true);
    const cp1 = cp();
    await (await driver.openBackupRead(s, { since: null, checkpoint: cp1 })).close({ keepCheckpoint: true });
    await lab.killQemu(s.domain);
    await virsh('start', '--domain', s.domain);

    const after = await driver.openBackupRead(s, { since: cp1, checkpoint: cp() });
    expect(after.mode).toBe('full');
    expect(after.fullReason).toBe('bitmap_inconsistent');
    expect((await after.read(0, 4)).equals(Buffer.alloc(4, 0x5a))).toBe(true);
    await after.close({ keepCheckpoint: true });
    expect(await checkpoints(s)).toEqual([after.checkpoint]);

    const next = await driver.openBackupRead(s, { since: after.checkpoint, checkpoint: cp() });
    expect(next.mode).toBe('incremental');
    await next.close({ keepCheckpoint: true });
  });

  it('a stopped domain cannot start while its disk is read; a kept read leaves one checkpoint and one bitmap', async () => {
    const s = await server(false);
    const first = await driver.openBackupRead(s, { since: null, checkpoint: cp() });
    await expect(virsh('start', '--domain', s.domain)).rejects.toThrow(/lock/i);
    await first.close({ keepCheckpoint: true });
    const second = await driver.openBackupRead(s, { since: first.checkpoint, checkpoint: cp() });
    await second.close({ keepCheckpoint: true });
    expect(await checkpoints(s)).toEqual([second.checkpoint]);
    expect(await bitmaps(s)).toEqual([second.checkpoint]);
    await virsh('start', '--domain', s.domain);
    expect(await driver.getPowerState(s)).toBe('running');
  });

  it('a worker killed during the read of a stopped disk does not leave the disk locked', async () => {
    const s = await server(false);
    const tryWrite = (): Promise<{ code: number | null; stderr: string }> =>
      new ProcessRunner().run('qemu-io', ['-f', 'qcow2', '-c', 'write -q 0 64k', s.diskPath], {
        timeoutMs: 30_000,
      });
    const worker = spawn(
      process.execPath,
      [
        '-r',
        'ts-node/register/transpile-only',
        path.join(__dirname, 'support', 'read-then-die.ts'),
        LIBVIRT_URI,
        s.domain,
        s.domainUuid!,
        s.diskPath,
        cp(),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((resolve, reject) => {
        worker.stdout.on('data', (d: Buffer) => String(d).includes('reading') && resolve());
        worker.on('exit', (code) => reject(new Error(`the worker exited (${code}) before reading`)));
      });
      expect((await tryWrite()).stderr).toMatch(/Failed to get "write" lock/); // held
    } finally {
      worker.kill('SIGKILL');
    }
    // qemu-io reads its commands from a pipe of the worker's: it ends at the pipe's end, with the worker.
    let w = await tryWrite();
    for (let i = 0; i < 50 && w.code !== 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      w = await tryWrite();
    }
    expect(w).toMatchObject({ code: 0 });
  });

  it("a running domain's read is refused insufficient_storage before the job when its disk's file system cannot hold the copy", async () => {
    // 24 MiB of data on a 40 MiB tmpfs: the push target beside the disk would need 24 MiB and more.
    const images = await lab.mountTmpfs('live-space', 40);
    const small = new LibvirtHypervisorDriver({
      uri: LIBVIRT_URI,
      imageRoots: [images],
      pollIntervalMs: 100,
    });
    const domain = lab.uniqueName('bkspace');
    const diskPath = path.join(images, `${domain}.qcow2`);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', diskPath, '64M']);
    await lab.writeDisk(diskPath, 0, randomBytes(24 * MIB));
    await lab.defineSimpleDomain(domain, diskPath);
    await virsh('start', '--domain', domain);
    const s = { id: ++n, domain, diskPath, domainUuid: await domainUuid(domain) };
    const refused = await small.openBackupRead(s, { since: null, checkpoint: cp() }).catch((e: unknown) => e);
    expect(isHypervisorError(refused) && refused.code).toBe('insufficient_storage');
    // The space check's words, not qemu's ENOSPC mid-job.
    expect(isHypervisorError(refused) && refused.detail).toMatch(/need \d+ bytes in /);
    expect((await fsp.readdir(images)).sort()).toEqual([`${domain}.qcow2`]);
    expect(await checkpoints(s)).toEqual([]);
    expect(await small.getPowerState(s)).toBe('running');
    await lab.destroyDomain(domain);
  });
});
