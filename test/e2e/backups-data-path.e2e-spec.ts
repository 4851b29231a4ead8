/**
 * Backups through the worker's real BACKUP_DATA_PATH (chunks and manifests in the directory store of
 * BACKUP_DIR, the fake driver's disks), end to end through the API: a full backup, an incremental one,
 * a restore onto a server of another node after the first node's worker is gone, a delete; and a
 * backup stays readable from the store it was written to after its node moves to another store.
 */
import { INestApplicationContext } from '@nestjs/common';
import { existsSync } from 'node:fs';
import path from 'node:path';
import request from 'supertest';
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

    // A delete runs on the queue of the backup's server's node: node A is back (rebuilt) to run it.
    workers.push(await startWorker(testConfig(db, 'worker', { WORKER_NODE: nodeA.name })));
    expect((await http().delete(`/api/v1/backups/${first.body.id}/`).set(auth)).status).toBe(204);
    await eventually(async () => !existsSync(manifest(first.body.id)), 30_000);
    expect(existsSync(manifest(second.body.id))).toBe(true);
  });
});
