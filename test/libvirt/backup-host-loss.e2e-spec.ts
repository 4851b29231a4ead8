/**
 * Host loss, on real parts: a running server on node A is backed up (full, then incremental) through the
 * API by A's worker process; A's disk and snapshot directory are destroyed and its worker is gone; the
 * same account's server on node B (another worker process, another image directory, an empty disk of
 * the same size) gets the backup restored through the API — and `qemu-img compare` says B's disk is
 * identical to a reference copy of A's disk taken at the backup. Once with the directory store, once
 * with the S3 store on the shared Ceph radosgw.
 */
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CephS3, cephTestsEnabled, dropBucket, s3Admin, startCeph } from '../support/ceph';
import { BackupWorld, WorldServer } from './support/backup-world';
import { describeLibvirt, exists, virsh } from './support/lab';

jest.setTimeout(600_000);

const MIB = 1024 * 1024;
/** Not a whole number of chunks: the last chunk is short. */
const DISK_BYTES = 48 * MIB + 512 * 1024;

/** Data at chunk starts, across a chunk boundary, in the short last chunk, and a scattered pattern. */
async function fillDisk(world: BackupWorld, s: WorldServer): Promise<void> {
  await world.write(s, 0, randomBytes(MIB));
  await world.write(s, 4 * MIB - 3000, randomBytes(8000));
  await world.write(s, 20 * MIB + 12345, randomBytes(5 * MIB));
  await world.write(s, DISK_BYTES - 70_000, randomBytes(70_000));
}

function hostLoss(store: string, storeEnv: () => Promise<Record<string, string>>, backupStore: string): void {
  it(`${store}: a backup restores onto another node after losing the first, identical to the disk at the backup`, async () => {
    const world = await BackupWorld.create(`hostloss-${backupStore}`, await storeEnv());
    try {
      const nodeA = await world.node(backupStore);
      const nodeB = await world.node(backupStore);
      await world.startWorker(nodeA);
      const source = await world.server(nodeA, DISK_BYTES, false);
      await fillDisk(world, source);
      await virsh('start', '--domain', source.domain);

      const full = await world.backup(source, 'full');
      expect(full.action).toMatchObject({ status: 'succeeded' });
      expect(full.backup).toMatchObject({ status: 'completed', mode: 'full' });
      const atFull = await world.reference(source, 'at-full');

      // Changed while stopped, backed up running: the incremental read has the changes only.
      await virsh('destroy', '--domain', source.domain);
      await world.write(source, 9 * MIB + 7, randomBytes(300_000));
      await world.write(source, 20 * MIB + 12345, Buffer.alloc(MIB)); // data zeroed
      await virsh('start', '--domain', source.domain);
      const incr = await world.backup(source, 'incremental');
      expect(incr.action).toMatchObject({ status: 'succeeded' });
      expect(incr.backup).toMatchObject({ status: 'completed', mode: 'incremental' });
      const atIncr = await world.reference(source, 'at-incremental');
      expect((await world.compare(atFull, atIncr)).identical).toBe(false);

      // Node A is lost: its worker, its disk and its snapshot directory.
      await nodeA.worker!.kill();
      await virsh('destroy', '--domain', source.domain);
      await fsp.rm(source.disk, { force: true });
      await fsp.rm(nodeA.snapshots, { recursive: true, force: true });
      await fsp.rm(nodeA.images, { recursive: true, force: true });

      await world.startWorker(nodeB);
      const target = await world.server(nodeB, DISK_BYTES, false);
      const restored = await world.restore(Number(incr.backup.id), target);
      expect(restored).toMatchObject({ kind: 'restore_backup', status: 'succeeded' });
      const same = await world.compare(atIncr, target.disk);
      expect(same).toEqual({ identical: true, output: 'Images are identical.' });

      // The full backup restores from its own manifest alone, onto the same target.
      expect(await world.restore(Number(full.backup.id), target)).toMatchObject({ status: 'succeeded' });
      expect((await world.compare(atFull, target.disk)).identical).toBe(true);
      expect(await exists(`${target.disk}.restoring`)).toBe(false);
    } finally {
      await world.dispose();
    }
  });
}

describeLibvirt('backup proofs: host loss', () => {
  let backupDir: string;
  beforeAll(async () => {
    backupDir = await mkdtemp(path.join(os.tmpdir(), 'vps-hostloss-backups-'));
  });
  afterAll(async () => {
    await rm(backupDir, { recursive: true, force: true });
  });

  hostLoss('directory store', async () => ({ BACKUP_DIR: backupDir }), 'default');

  (cephTestsEnabled() ? describe : describe.skip)('on Ceph', () => {
    let ceph: CephS3;
    let admin: S3Client;
    const bucket = `vps-hostloss-${process.pid}-${randomBytes(3).toString('hex')}`;
    beforeAll(async () => {
      ceph = startCeph();
      admin = s3Admin(ceph);
      await admin.send(new CreateBucketCommand({ Bucket: bucket }));
    }, 120_000);
    afterAll(async () => {
      if (admin) {
        await dropBucket(admin, bucket);
        admin.destroy();
      }
      ceph?.stop();
    }, 120_000);

    hostLoss(
      's3 store',
      async () => ({
        BACKUP_STORES: JSON.stringify({
          offsite: {
            kind: 's3',
            endpoint: ceph.endpoint,
            region: 'us-east-1',
            bucket,
            prefix: 'hostloss/',
            accessKeyIdEnv: 'OFFSITE_KEY_ID',
            secretAccessKeyEnv: 'OFFSITE_SECRET',
          },
        }),
        OFFSITE_KEY_ID: ceph.accessKeyId,
        OFFSITE_SECRET: ceph.secretAccessKey,
      }),
      'offsite',
    );
  });
});
