/**
 * Undo of a restore on real parts: the API, libvirt workers run from `dist/`, real domains and qcow2
 * disks, the directory backup store. Restore then undo gives a disk whose guest-visible content is
 * byte-identical (`qemu-img compare`) to the one before the restore — for a backup restore (the safety
 * copy a `pre_restore` backup, of a running server) and for a snapshot restore (a node without a
 * configured backup store: the copy a `pre_restore` snapshot), where undo of the undo then gives the
 * restored disk again. The rules are shown on the fake node: test/e2e/restore-undo.e2e-spec.ts.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BackupWorld, WorldServer } from './support/backup-world';
import { eventually } from '../support/test-env';
import { describeLibvirt, virsh } from './support/lab';

// Slow on a loaded machine: each step copies a disk; two workers' start-up.
jest.setTimeout(900_000);

const MIB = 1024 * 1024;

describeLibvirt('undo of a restore on real libvirt disks (qemu-img compare)', () => {
  let backupDir: string;
  let world: BackupWorld;
  beforeAll(async () => {
    backupDir = await mkdtemp(path.join(os.tmpdir(), 'vps-undo-backups-'));
    world = await BackupWorld.create('undo', { BACKUP_DIR: backupDir });
  });
  afterAll(async () => {
    await world?.dispose();
    await rm(backupDir, { recursive: true, force: true });
  });

  /** Undoes the restore action through the API and waits for the undo. */
  async function undo(actionId: number) {
    const r = await world.call('POST', `actions/${actionId}/undo/`);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ undo_of: actionId });
    return world.finished(Number(r.body.id));
  }

  /** Starts the domain with virsh and waits until the worker's reconciler shows the server running. */
  async function startBehindTheApi(s: WorldServer) {
    await virsh('start', '--domain', s.domain);
    await eventually(
      async () => (await world.call('GET', `servers/${s.id}/`)).body.status === 'running',
      30_000,
    );
  }

  async function expectSame(s: WorldServer, reference: string, same: boolean) {
    const c = await world.compare(s.disk, reference);
    expect({ identical: c.identical, output: same ? c.output : 'differs' }).toEqual({
      identical: same,
      output: same ? 'Images are identical.' : 'differs',
    });
  }

  it('backup restore of a running server (directory store): undo gives the disk from before, byte for byte', async () => {
    const node = await world.node('default');
    await world.startWorker(node);
    const s = await world.server(node, 16 * MIB, false);
    await world.write(s, 0, randomBytes(6 * MIB));
    await startBehindTheApi(s);
    const { backup } = await world.backup(s, 'base');
    expect(backup).toMatchObject({ status: 'completed' });
    await virsh('destroy', '--domain', s.domain);
    await world.write(s, 2 * MIB, randomBytes(3 * MIB));
    await world.write(s, 12 * MIB, randomBytes(MIB));
    await startBehindTheApi(s);
    const before = await world.reference(s, 'before-backup-restore');

    const restore = await world.restore(Number(backup.id), s);
    expect(restore).toMatchObject({ status: 'succeeded', safety_copy: { type: 'backup' } });
    const copy = (await world.call('GET', `backups/${(restore.safety_copy as { id: number }).id}/`)).body;
    expect(copy).toMatchObject({ kind: 'pre_restore', status: 'completed', mode: 'incremental' });
    expect((await world.call('GET', `servers/${s.id}/`)).body.status).toBe('running');
    await expectSame(s, before, false);

    expect(await undo(Number(restore.id))).toMatchObject({ status: 'succeeded', kind: 'restore_backup' });
    await expectSame(s, before, true);
    expect((await world.call('GET', `servers/${s.id}/`)).body.status).toBe('running');
  });

  it('snapshot restore on a node without a configured backup store: the copy is a snapshot; undo gives the disk from before, undo of the undo the restored one', async () => {
    const node = await world.node('not-configured');
    await world.startWorker(node);
    const s = await world.server(node, 16 * MIB, false);
    await world.write(s, MIB, randomBytes(4 * MIB));
    const created = await world.call('POST', 'snapshots/', { server_id: s.id, name: 'base' });
    expect(created.status).toBe(201);
    expect(await world.finished(Number(created.body.action_id))).toMatchObject({ status: 'succeeded' });
    await world.write(s, 0, randomBytes(2 * MIB));
    await world.write(s, 9 * MIB, randomBytes(5 * MIB));
    const before = await world.reference(s, 'before-snapshot-restore');

    const r = await world.call('POST', `snapshots/${created.body.id}/restore/`);
    expect(r.status).toBe(200);
    const restore = await world.finished(Number(r.body.action_id));
    expect(restore).toMatchObject({ status: 'succeeded', safety_copy: { type: 'snapshot' } });
    const copy = (await world.call('GET', `snapshots/${(restore.safety_copy as { id: number }).id}/`)).body;
    expect(copy).toMatchObject({ kind: 'pre_restore', status: 'completed' });
    await expectSame(s, before, false);
    const restored = await world.reference(s, 'after-snapshot-restore');

    const undone = await undo(Number(restore.id));
    expect(undone).toMatchObject({ status: 'succeeded', kind: 'restore_snapshot' });
    await expectSame(s, before, true);
    expect((await world.call('GET', `servers/${s.id}/`)).body.status).toBe('stopped');

    // An undo is a restore with its own safety copy: undoing it redoes the restore, byte for byte.
    expect(await undo(Number(undone.id))).toMatchObject({ status: 'succeeded', kind: 'restore_snapshot' });
    await expectSame(s, restored, true);
  });
});
