/**
 * Restores that must be refused, on real parts, leaving the target's disk untouched: a backup with one
 * flipped byte in a stored chunk (real libvirt, directory store, through the API), and a rebuild the
 * disk's file system has no room for (refused before anything is written, not mid-copy).
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isHypervisorError } from '../../src/hypervisor/hypervisor-driver';
import { LibvirtHypervisorDriver } from '../../src/hypervisor/libvirt/libvirt-hypervisor-driver';
import { BackupWorld, WorldServer } from './support/backup-world';
import { describeLibvirt, domainUuid, exists, Lab, LIBVIRT_URI, run, sha256OfFile } from './support/lab';

jest.setTimeout(300_000);

const MIB = 1024 * 1024;

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(dir, { withFileTypes: true, recursive: true }))
    if (e.isFile()) out.push(path.join(e.parentPath, e.name));
  return out.sort();
}

/**
 * The disk's guest-visible content is the reference copy's (`qemu-img compare`): its file is not byte
 * for byte the same, because the restore's safety copy (a backup) records a checkpoint in it first.
 */
async function untouched(world: BackupWorld, s: WorldServer, reference: string): Promise<void> {
  expect(await world.compare(reference, s.disk)).toEqual({
    identical: true,
    output: 'Images are identical.',
  });
  expect(await exists(`${s.disk}.restoring`)).toBe(false);
}

describeLibvirt('backup proofs: restores refused with the disk untouched', () => {
  let backupDir: string;
  let world: BackupWorld;
  beforeAll(async () => {
    backupDir = await mkdtemp(path.join(os.tmpdir(), 'vps-refusal-backups-'));
    world = await BackupWorld.create('refusal', { BACKUP_DIR: backupDir });
  });
  afterAll(async () => {
    await world?.dispose();
    await rm(backupDir, { recursive: true, force: true });
  });

  it('a flipped byte in a stored chunk: the restore fails backup_corrupt, the target disk is untouched', async () => {
    const node = await world.node();
    await world.startWorker(node);
    const source = await world.server(node, 16 * MIB, false);
    await world.write(source, 0, randomBytes(6 * MIB));
    const { backup } = await world.backup(source, 'to-damage');
    expect(backup).toMatchObject({ status: 'completed' });

    const chunks = (await files(backupDir)).filter((f) => f.includes(`/accounts/${world.accountId}/chunks/`));
    expect(chunks).toHaveLength(2);
    const victim = chunks[1];
    const bytes = await fsp.readFile(victim);
    bytes[bytes.length >> 1] ^= 0x01;
    await fsp.writeFile(victim, bytes);

    const target = await world.server(node, 16 * MIB, false);
    await world.write(target, MIB, Buffer.alloc(MIB, 0x77));
    const before = await world.reference(target, 'before-refused-restore');
    const action = await world.restore(Number(backup.id), target);
    expect(action).toMatchObject({
      status: 'failed',
      error: { code: 'backup_corrupt', message: 'The backup is damaged and cannot be used.' },
    });
    await untouched(world, target, before);
    expect((await world.call('GET', `servers/${target.id}/`)).body.status).toBe('stopped');
  });

  it('a target whose disk has no room for the rebuild: insufficient_storage before anything is written, or when the disk fills mid-write', async () => {
    // 36 MiB of data: the rebuilt qcow2 and the driver's margin need 44 MiB next to the disk, the tmpfs has 40.
    const lab = await Lab.create('space');
    try {
      const images = await lab.mountTmpfs('images', 40);
      const driver = new LibvirtHypervisorDriver({
        uri: LIBVIRT_URI,
        imageRoots: [images],
        pollIntervalMs: 100,
      });
      const domain = lab.uniqueName('space');
      const disk = path.join(images, `${domain}.qcow2`);
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '64M']);
      await lab.defineSimpleDomain(domain, disk);
      const server = { id: 1, domain, diskPath: disk, domainUuid: await domainUuid(domain) };
      const before = await sha256OfFile(disk);
      let filled = false;
      const refused = await driver
        .restoreDiskFrom(
          server,
          64 * MIB,
          async (w) => {
            filled = true;
            for (let at = 0; at < 36 * MIB; at += 4 * MIB) await w.write(at, randomBytes(4 * MIB));
          },
          () => undefined,
          { dataBytes: 36 * MIB },
        )
        .catch((e: unknown) => e);
      expect(isHypervisorError(refused) && refused.code).toBe('insufficient_storage');
      expect(filled).toBe(false);
      expect(await sha256OfFile(disk)).toBe(before);
      expect((await fsp.readdir(images)).sort()).toEqual([`${domain}.qcow2`]);

      // More data than the check was told of: the file system fills mid-write, and the write's ENOSPC
      // is insufficient_storage too, with the disk untouched and the half-written image gone.
      const midWrite = await driver
        .restoreDiskFrom(
          server,
          64 * MIB,
          async (w) => {
            for (let at = 0; at < 48 * MIB; at += 4 * MIB) await w.write(at, randomBytes(4 * MIB));
          },
          () => undefined,
          { dataBytes: 8 * MIB },
        )
        .catch((e: unknown) => e);
      expect(isHypervisorError(midWrite) && midWrite.code).toBe('insufficient_storage');
      expect(await sha256OfFile(disk)).toBe(before);
      expect((await fsp.readdir(images)).sort()).toEqual([`${domain}.qcow2`]);

      // With room for it, the same rebuild goes through.
      await driver.restoreDiskFrom(
        server,
        64 * MIB,
        async (w) => {
          for (let at = 0; at < 8 * MIB; at += 4 * MIB) await w.write(at, randomBytes(4 * MIB));
        },
        () => undefined,
        { dataBytes: 8 * MIB },
      );
      await driver.idle();
    } finally {
      await lab.dispose();
    }
  });
});
