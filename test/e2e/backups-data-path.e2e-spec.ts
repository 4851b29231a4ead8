/**
 * Backups through the worker's real BACKUP_DATA_PATH (chunks and manifests in the directory store of
 * BACKUP_DIR, the fake driver's disks), end to end through the API: a full backup, an incremental one,
 * a restore onto a server of another node after the first node's worker is gone, a delete that waits
 * for its node's worker; a backup stays readable from the store it was written to after its node moves
 * to another store; and each worker's metrics count what it read, uploaded, deduplicated and restored.
 */
import { INestApplicationContext } from '@nestjs/common';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import request from 'supertest';
import { JobQueue } from '../../src/jobs/job-queue';
import { MetricsService } from '../../src/metrics/metrics.service';
import { fakeDiskContent } from '../../src/hypervisor/fake/fake-hypervisor-driver';
import { createAccount, createNode, createServer, createToken } from '../factories';
import {
  createTestDatabase,
  eventually,
  startApi,
  startWorker,
  TestApi,
  TEST_BACKUP_DIR,
  TestDatabase,
  testConfig,
} from '../support/test-env';

type Json = Record<string, unknown>;

/** The value of a worker's counter whose labels include `labels` (0 when it has no such series). */
async function counter(
  worker: INestApplicationContext,
  name: keyof MetricsService,
  labels: Record<string, string> = {},
): Promise<number> {
  const metric = worker.get(MetricsService)[name] as {
    get(): Promise<{ values: { value: number; labels: object }[] }>;
  };
  const match = (await metric.get()).values.find((v) =>
    Object.entries(labels).every(([k, want]) => (v.labels as Record<string, unknown>)[k] === want),
  );
  return match?.value ?? 0;
}

describe('backups through the real data path (real Postgres + Redis + workers)', () => {
  let db: TestDatabase;
  let api: TestApi;
  const workers: INestApplicationContext[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
  });
  afterAll(async () => {
    for (const w of workers) await w.close();
    await api?.close();
    await db?.drop();
  });

  it('full, then incremental; restored onto another node after losing the first; deleted', async () => {
    const [nodeA, nodeB] = [await createNode(api.prisma), await createNode(api.prisma)];
    const workerA = await startWorker(testConfig(db, 'worker', { WORKER_NODE: nodeA.name }));
    workers.push(workerA);
    const account = await createAccount(api.prisma);
    const auth = { Authorization: `Bearer ${(await createToken(api.prisma, account.id)).token}` };
    const source = await createServer(api.prisma, account.id, nodeA.id, { status: 'stopped' });
    const target = await createServer(api.prisma, account.id, nodeB.id, { status: 'stopped' });
    const http = () => request(api.url);
    const done = (actionId: number) =>
      eventually(async () => {
        const a = (await http().get(`/api/v1/actions/${actionId}/`).set(auth)).body as Json;
        return a.status === 'succeeded' || a.status === 'failed' ? a : null;
      }, 60_000);

    const first = await http()
      .post('/api/v1/backups/')
      .set(auth)
      .send({ server_id: source.id, name: 'full' });
    expect(await done(first.body.action_id)).toMatchObject({ status: 'succeeded' });
    expect((await http().get(`/api/v1/backups/${first.body.id}/`).set(auth)).body).toMatchObject({
      status: 'completed',
      mode: 'full',
      mode_reason: 'no_previous_backup',
    });
    const second = await http()
      .post('/api/v1/backups/')
      .set(auth)
      .send({ server_id: source.id, name: 'incr' });
    expect(await done(second.body.action_id)).toMatchObject({ status: 'succeeded' });
    expect((await http().get(`/api/v1/backups/${second.body.id}/`).set(auth)).body).toMatchObject({
      status: 'completed',
      mode: 'incremental',
    });

    // Worker A counted what it did: two creates, one disk read (the incremental found nothing changed),
    // and none of it as snapshot bytes.
    const disk = fakeDiskContent(source.domain).length;
    expect(await counter(workerA, 'backupOperations', { operation: 'create', result: 'succeeded' })).toBe(2);
    expect(await counter(workerA, 'backupReadBytes')).toBe(disk);
    expect(await counter(workerA, 'backupUploadedBytes')).toBeGreaterThan(disk); // sealed chunk + 2 manifests
    expect(await counter(workerA, 'bytesCopied')).toBe(0);

    // Node A is lost with its worker; the backup restores onto node B from backup storage alone.
    await workerA.close();
    workers.splice(workers.indexOf(workerA), 1);
    workers.push(await startWorker(testConfig(db, 'worker', { WORKER_NODE: nodeB.name })));
    const restore = await http()
      .post(`/api/v1/backups/${second.body.id}/restore/`)
      .set(auth)
      .send({ server_id: target.id });
    expect(restore.status).toBe(200);
    expect(await done(restore.body.action_id)).toMatchObject({ kind: 'restore_backup', status: 'succeeded' });
    expect((await http().get(`/api/v1/servers/${target.id}/`).set(auth)).body.status).toBe('stopped');
    const workerB = workers[workers.length - 1];
    expect(await counter(workerB, 'backupRestoredBytes')).toBe(disk);

    // The restored target backed up on node B: its one chunk is already in the store, only a manifest goes
    // up. (Counted from here: the restore's safety copy of the target's old disk went up before.)
    const dedupBefore = await counter(workerB, 'backupDeduplicatedBytes', { reason: 'stored' });
    const uploadedBefore = await counter(workerB, 'backupUploadedBytes');
    const ofTarget = await http()
      .post('/api/v1/backups/')
      .set(auth)
      .send({ server_id: target.id, name: 'target' });
    expect(await done(ofTarget.body.action_id)).toMatchObject({ status: 'succeeded' });
    expect((await counter(workerB, 'backupDeduplicatedBytes', { reason: 'stored' })) - dedupBefore).toBe(
      disk,
    );
    expect((await counter(workerB, 'backupUploadedBytes')) - uploadedBefore).toBeLessThan(disk);

    // Each backup recorded the store it went to; its manifest is there.
    const manifest = (id: number) =>
      path.join(TEST_BACKUP_DIR, 'accounts', String(account.id), 'manifests', String(id));
    for (const id of [first.body.id, second.body.id]) {
      expect((await api.prisma.backup.findUniqueOrThrow({ where: { id } })).store).toBe('default');
      expect(existsSync(manifest(id))).toBe(true);
    }

    // The target's node moves to a store this worker does not even configure: its old backups are still
    // read from the store they were written to.
    await api.prisma.node.update({ where: { id: nodeB.id }, data: { backupStore: 'elsewhere' } });
    const again = await http()
      .post(`/api/v1/backups/${first.body.id}/restore/`)
      .set(auth)
      .send({ server_id: target.id });
    expect(await done(again.body.action_id)).toMatchObject({ kind: 'restore_backup', status: 'succeeded' });
    expect(await counter(workerB, 'backupOperations', { operation: 'restore', result: 'succeeded' })).toBe(2);
    // A restore that fails is counted under its error code: the target's own backup lost its manifest.
    await rm(manifest(ofTarget.body.id));
    const broken = await http().post(`/api/v1/backups/${ofTarget.body.id}/restore/`).set(auth).send({});
    expect(await done(broken.body.action_id)).toMatchObject({
      status: 'failed',
      error: { code: 'backup_corrupt' },
    });
    expect(
      await counter(workerB, 'backupOperations', { operation: 'restore', result: 'backup_corrupt' }),
    ).toBe(1);

    // A delete runs on the queue of the backup's server's node. Node A has no worker: the backup leaves
    // the list at once, but its data stays, its job waiting on node A's queue (node B's worker never
    // takes it), until node A is back (rebuilt) to run it.
    expect((await http().delete(`/api/v1/backups/${first.body.id}/`).set(auth)).status).toBe(204);
    expect((await http().get(`/api/v1/backups/${first.body.id}/`).set(auth)).status).toBe(404);
    const del = await api.prisma.action.findFirstOrThrow({
      where: { backupId: first.body.id, kind: 'delete_backup' },
    });
    const queue = api.app.get(JobQueue);
    await eventually(async () => ['waiting', 'prioritized'].includes(await queue.jobState(nodeA.id, del.id)));
    await new Promise((r) => setTimeout(r, 3000));
    expect((await api.prisma.action.findUniqueOrThrow({ where: { id: del.id } })).status).toBe('pending');
    expect(existsSync(manifest(first.body.id))).toBe(true);
    expect(await counter(workerB, 'backupOperations', { operation: 'delete' })).toBe(0);

    const workerA2 = await startWorker(testConfig(db, 'worker', { WORKER_NODE: nodeA.name }));
    workers.push(workerA2);
    expect(await done(del.id)).toMatchObject({ kind: 'delete_backup', status: 'succeeded' });
    expect(existsSync(manifest(first.body.id))).toBe(false);
    expect(existsSync(manifest(second.body.id))).toBe(true);
    expect(await counter(workerA2, 'backupOperations', { operation: 'delete', result: 'succeeded' })).toBe(1);
  });
});
