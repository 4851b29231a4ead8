/**
 * Backups through the worker's real BACKUP_DATA_PATH (chunks and manifests in backup storage, the fake
 * driver's disks), end to end through the API: a full backup, an incremental one, a restore onto a
 * server of another node after the first node's worker is gone, a delete. Runs once the worker module
 * provides the data path (the backup data path, stores and driver merged and wired): until then set
 * BACKUPS_REAL_DATA_PATH=1 to run it, which the lead's wiring makes the default.
 */
import { INestApplicationContext } from '@nestjs/common';
import request from 'supertest';
import { createAccount, createNode, createServer, createToken } from '../factories';
import {
  createTestDatabase,
  eventually,
  startApi,
  startWorker,
  TestApi,
  TestDatabase,
  testConfig,
} from '../support/test-env';

const describeWired = process.env.BACKUPS_REAL_DATA_PATH === '1' ? describe : describe.skip;
type Json = Record<string, unknown>;

describeWired('backups through the real data path (real Postgres + Redis + workers)', () => {
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

    expect((await http().delete(`/api/v1/backups/${first.body.id}/`).set(auth)).status).toBe(204);
  });
});
