import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../../src/generated/prisma/client';
import { HypervisorError, ServerRef, SnapshotRef } from '../../src/hypervisor/hypervisor-driver';
import { LibvirtHypervisorDriver } from '../../src/hypervisor/libvirt/libvirt-hypervisor-driver';
import { createTestDatabase, TestDatabase } from '../support/test-env';
import {
  describeLibvirt,
  domainUuid,
  domainUuidByName,
  domState,
  Lab,
  LIBVIRT_URI,
  sha256OfFile,
  virsh,
} from './support/lab';

/**
 * Which VM an operation reaches, on the real libvirtd with two domains: one running (libvirt gives it
 * a small numeric id, N) and one, shut off, whose *name* is "N". `virsh --domain N` resolves the id
 * first, so a driver (or an import) that passes names would stop, restore or register the running VM.
 * Also: a domain renamed or redefined since it was registered, and disks outside the node's roots.
 */
jest.setTimeout(180_000);

describeLibvirt('libvirt domains are addressed by UUID', () => {
  let lab: Lab;
  let images: string;
  let driver: LibvirtHypervisorDriver;
  /** The running domain; `idName` is its libvirt id, as text. */
  let other: ServerRef;
  let idName: string;
  /** The shut-off domain named `idName`. */
  let named: ServerRef;
  let nextId = 7000 + Math.floor(Math.random() * 1_000_000) * 10;
  const newSnap = (dir: string): SnapshotRef => ({ id: nextId++, snapshotDir: dir });
  const noProgress = (): void => undefined;

  async function stoppedServer(name: string): Promise<ServerRef> {
    const diskPath = await lab.makeDisk(path.join('images', `${name}-disk.qcow2`), 16);
    await lab.writeDisk(diskPath, 0, Buffer.alloc(1024 * 1024, name));
    await lab.defineSimpleDomain(name, diskPath);
    return { id: nextId++, domain: name, domainUuid: await domainUuidByName(name), diskPath };
  }

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

  beforeAll(async () => {
    lab = await Lab.create('identity');
    images = await lab.mkdir('images');
    driver = new LibvirtHypervisorDriver({ uri: LIBVIRT_URI, imageRoots: [images], pollIntervalMs: 100 });
    other = await stoppedServer(lab.uniqueName('other'));
    await virsh('start', '--domain', other.domainUuid!);
    idName = (await virsh('domid', '--domain', other.domainUuid!)).trim();
    expect(idName).toMatch(/^\d+$/);
    named = await stoppedServer(idName);
    expect(named.domainUuid).not.toBe(other.domainUuid);
  });
  afterAll(async () => {
    await lab?.dispose();
  });

  it("a domain named like another one's id: every call reaches the named domain, never the other", async () => {
    // What virsh itself does with the name: the running domain answers.
    expect((await virsh('domname', '--domain', idName)).trim()).toBe(other.domain);

    expect(await driver.getPowerState(named)).toBe('stopped');
    expect(await driver.stop(named, { graceSeconds: 1 })).toEqual({ forced: false });
    expect(await domState(other.domainUuid!)).toBe('running');
    // A copy of the named domain's own disk, taken as the copy of a shut-off domain.
    const snapshots = await lab.mkdir('identity-snaps');
    const snap = newSnap(snapshots);
    expect(await driver.createSnapshot(named, snap, noProgress)).toMatchObject({ consistency: 'stopped' });
    await driver.restoreSnapshot(named, snap, noProgress);
    await driver.start(named);
    expect(await domState(named.domainUuid!)).toBe('running');
    expect(await domState(other.domainUuid!)).toBe('running');
    await driver.stop(named, { graceSeconds: 1 });
    expect(await domState(named.domainUuid!)).toBe('shut off');
    expect(await domState(other.domainUuid!)).toBe('running');
    // How the worker pins a server registered without a UUID: by the exact name.
    expect(await driver.findDomainUuid(idName)).toBe(named.domainUuid);
  });

  it('a domain renamed, or defined again under the name, is domain_not_found and nothing is done', async () => {
    const s = await stoppedServer(lab.uniqueName('renamed'));
    await virsh('domrename', '--domain', s.domainUuid!, '--new-name', `${s.domain}-x`);
    lab.domains.push(`${s.domain}-x`);
    for (const call of [driver.getPowerState(s), driver.start(s), driver.stop(s, { graceSeconds: 0 })]) {
      const e = await expectCode(call, 'domain_not_found');
      expect(e.retryable).toBe(false);
      expect(e.message).not.toContain(s.domain);
    }
    // A new domain takes the old name: the registered UUID is still the renamed one's, so refused.
    const disk = await lab.makeDisk(path.join('images', `${s.domain}-new.qcow2`), 16);
    await lab.defineSimpleDomain(s.domain, disk);
    await virsh('start', '--domain', s.domain);
    await expectCode(driver.stop(s, { graceSeconds: 0 }), 'domain_not_found');
    expect(await domState(await domainUuid(s.domain))).toBe('running');
    expect(await domState(s.domainUuid!)).toBe('shut off');
    // Undefined altogether.
    await virsh('undefine', '--domain', s.domainUuid!);
    await expectCode(driver.getPowerState(s), 'domain_not_found');
  });

  it("a disk outside the node's image roots, as written or through a symbolic link, is never read or written", async () => {
    const outsideDir = await lab.mkdir('outside');
    const outside = await lab.makeDisk(path.join('outside', 'victim.qcow2'), 16);
    const before = await sha256OfFile(outside);
    await fsp.symlink(outside, path.join(images, 'link.qcow2'));
    await fsp.symlink(outsideDir, path.join(images, 'linked-dir'));
    const snapshots = await lab.mkdir('roots-snaps');
    for (const diskPath of [
      outside,
      path.join(images, '..', 'outside', 'victim.qcow2'),
      path.join(images, 'link.qcow2'),
      path.join(images, 'linked-dir', 'victim.qcow2'),
    ]) {
      const ref = { ...named, diskPath };
      const create = await expectCode(
        driver.createSnapshot(ref, newSnap(snapshots), noProgress),
        'hypervisor_error',
      );
      expect(create.retryable).toBe(false);
      expect(create.message).not.toContain(diskPath);
      await expectCode(driver.restoreSnapshot(ref, newSnap(snapshots), noProgress), 'hypervisor_error');
    }
    expect(await fsp.readdir(snapshots)).toEqual([]);
    expect((await fsp.readdir(outsideDir)).sort()).toEqual(['victim.qcow2']);
    expect(await sha256OfFile(outside)).toBe(before);
    // The worker's start-up cleanup leaves files next to such a disk alone.
    await fsp.writeFile(`${outside}.restoring`, 'not ours');
    await driver.cleanupInterrupted(snapshots, [outside, path.join(images, 'linked-dir', 'victim.qcow2')]);
    expect(await fsp.readFile(`${outside}.restoring`, 'utf8')).toBe('not ours');
  });

  describe('the operator CLI registers the domain with the name, by its UUID', () => {
    let db: TestDatabase;
    let prisma: PrismaClient;
    const cli = (args: string[]) =>
      spawnSync(process.execPath, [path.resolve(__dirname, '../../dist/cli/main.js'), ...args], {
        env: { PATH: process.env.PATH, DATABASE_URL: db.url },
        encoding: 'utf8',
      });

    beforeAll(async () => {
      db = await createTestDatabase();
      prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: db.url }) });
      expect(cli(['account', 'create', 'acme']).status).toBe(0);
      const node = cli([
        'node',
        'create',
        'lv',
        '--driver',
        'libvirt',
        '--uri',
        LIBVIRT_URI,
        '--snapshot-dir',
        path.join(lab.dir, 'cli-snaps'),
        '--image-root',
        images,
      ]);
      expect(node.stderr).toBe('');
    });
    afterAll(async () => {
      await prisma?.$disconnect();
      await db?.drop();
    });

    it('import records the UUID and disk libvirt gives that name; an id-shaped name is refused', async () => {
      const imported = cli([
        'server',
        'import',
        '--account',
        'acme',
        '--node',
        'lv',
        '--domain',
        other.domain,
      ]);
      expect(imported.stderr).toBe('');
      const row = await prisma.server.findUniqueOrThrow({ where: { id: Number(imported.stdout) } });
      expect(row).toMatchObject({
        domainUuid: other.domainUuid,
        diskPath: other.diskPath,
        status: 'running',
      });

      // Importing "N" would register the running domain whose id is N, with its disk.
      const digits = cli(['server', 'import', '--account', 'acme', '--node', 'lv', '--domain', idName]);
      expect(digits.status).toBe(1);
      expect(digits.stderr).toMatch(/all digits/);
      expect(await prisma.server.count()).toBe(1);
    });

    it('create looks the domain up by its exact name: it must exist, and its UUID is recorded', async () => {
      const s = await stoppedServer(lab.uniqueName('cli'));
      const created = cli([
        'server',
        'create',
        '--account',
        'acme',
        '--node',
        'lv',
        '--name',
        'c',
        '--domain',
        s.domain,
        '--disk',
        s.diskPath,
      ]);
      expect(created.stderr).toBe('');
      const row = await prisma.server.findUniqueOrThrow({ where: { id: Number(created.stdout) } });
      expect(row.domainUuid).toBe(s.domainUuid);
      const missing = cli([
        'server',
        'create',
        '--account',
        'acme',
        '--node',
        'lv',
        '--name',
        'm',
        '--domain',
        lab.uniqueName('missing'),
        '--disk',
        path.join(images, 'missing.qcow2'),
      ]);
      expect(missing.status).toBe(1);
      expect(missing.stderr).toMatch(/not found/);
      expect(await prisma.server.count({ where: { name: 'm' } })).toBe(0);
    });
  });
});
