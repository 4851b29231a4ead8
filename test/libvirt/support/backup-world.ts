/**
 * Backups through the API on real parts: a database, the API, libvirt nodes whose workers run as
 * separate processes from `dist/` (as in production), real domains with qcow2 disks in each node's own
 * image directory, and the backup store the test configures (a directory, or S3 on Ceph). Everything is
 * removed by `dispose()`.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createAccount, createNode, createServer, createToken } from '../../factories';
import { AppProcess, http, Json } from '../../faults/support/fault-env';
import {
  createTestDatabase,
  eventually,
  startApi,
  TEST_BACKUP_MASTER_KEY,
  TestApi,
  TestDatabase,
  testConfig,
} from '../../support/test-env';
import { domainUuid, Lab, LIBVIRT_URI, run, virsh } from './lab';

export interface WorldNode {
  id: number;
  name: string;
  /** The node's image root (its "host disk"). */
  images: string;
  snapshots: string;
  worker?: AppProcess;
}

export interface WorldServer {
  id: number;
  domain: string;
  disk: string;
}

export class BackupWorld {
  db!: TestDatabase;
  api!: TestApi;
  lab!: Lab;
  auth: Record<string, string> = {};
  accountId = 0;
  readonly nodes: WorldNode[] = [];

  private constructor(
    /** Configuration every process gets: the stores (BACKUP_DIR / BACKUP_STORES and their secrets). */
    readonly storeEnv: Record<string, string>,
  ) {}

  static async create(tag: string, storeEnv: Record<string, string>): Promise<BackupWorld> {
    const w = new BackupWorld(storeEnv);
    w.lab = await Lab.create(tag);
    w.db = await createTestDatabase();
    w.api = await startApi(testConfig(w.db, 'api', { BACKUP_DIR: '', ...storeEnv }));
    const account = await createAccount(w.api.prisma);
    w.accountId = account.id;
    w.auth = { Authorization: `Bearer ${(await createToken(w.api.prisma, account.id)).token}` };
    return w;
  }

  /**
   * A libvirt node with its own image and snapshot directories, writing to `backupStore`; with
   * `imagesMiB`, its image directory is a tmpfs of that size (a small host disk).
   */
  async node(backupStore = 'default', imagesMiB?: number): Promise<WorldNode> {
    const name = `images-${this.nodes.length}`;
    const images = imagesMiB ? await this.lab.mountTmpfs(name, imagesMiB) : await this.lab.mkdir(name);
    const snapshots = await this.lab.mkdir(`snapshots-${this.nodes.length}`);
    const row = await createNode(this.api.prisma, {
      driver: 'libvirt',
      snapshotDir: snapshots,
      imageRoots: [images],
    });
    await this.api.prisma.node.update({ where: { id: row.id }, data: { backupStore, uri: LIBVIRT_URI } });
    const node: WorldNode = { id: row.id, name: row.name, images, snapshots };
    this.nodes.push(node);
    return node;
  }

  /** The environment of a worker process of `node` (`extra` last). */
  workerEnv(node: WorldNode, extra: Record<string, string> = {}): Record<string, string> {
    return {
      DATABASE_URL: this.db.url,
      REDIS_URL: process.env.REDIS_URL ?? '',
      QUEUE_PREFIX: `test-${this.db.name}`,
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
      WORKER_NODE: node.name,
      BACKUP_MASTER_KEY: TEST_BACKUP_MASTER_KEY,
      JOB_BACKOFF_MS: '100',
      DISPATCH_INTERVAL_MS: '200',
      PROGRESS_WRITE_INTERVAL_MS: '200',
      STOP_GRACE_SECONDS: '1',
      ...this.storeEnv,
      ...extra,
    };
  }

  /** Starts `node dist/main.js worker` for `node` and waits until it took its queue. */
  async startWorker(node: WorldNode, extra: Record<string, string> = {}): Promise<AppProcess> {
    const p = AppProcess.spawn('worker', this.workerEnv(node, extra));
    const { Queue } = await import('bullmq');
    const { Redis } = await import('ioredis');
    const { nodeQueueName } = await import('../../../src/jobs/job-queue');
    const connection = new Redis(process.env.REDIS_URL!, { maxRetriesPerRequest: null });
    const queue = new Queue(nodeQueueName(node.id), { connection, prefix: `test-${this.db.name}` });
    try {
      await eventually(async () => {
        if (!p.alive) throw new Error(`worker exited\n${p.tail()}`);
        return (await queue.getWorkers()).length > 0;
      }, 60_000);
    } catch (e) {
      await p.kill();
      throw new Error(`worker did not start: ${String(e)}\n${p.tail()}`);
    } finally {
      await queue.close();
      connection.disconnect();
    }
    node.worker = p;
    return p;
  }

  /**
   * A server of the account on `node`: a domain that boots nothing (it never writes its disk) over a
   * qcow2 of `sizeBytes` in the node's image directory, running or stopped.
   */
  async server(node: WorldNode, sizeBytes: number, running: boolean): Promise<WorldServer> {
    const domain = this.lab.uniqueName('bkw');
    const disk = path.join(node.images, `${domain}.qcow2`);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', disk, String(sizeBytes)]);
    await this.lab.defineSimpleDomain(domain, disk);
    if (running) await virsh('start', '--domain', domain);
    const row = await createServer(this.api.prisma, this.accountId, node.id, {
      status: running ? 'running' : 'stopped',
      domain,
      domainUuid: await domainUuid(domain),
      diskPath: disk,
    });
    return { id: row.id, domain, disk };
  }

  /** Writes `data` at `offset` of a stopped server's disk. */
  async write(s: WorldServer, offset: number, data: Buffer): Promise<void> {
    const src = path.join(this.lab.dir, `w-${randomBytes(4).toString('hex')}.bin`);
    await fsp.writeFile(src, data);
    try {
      await run('qemu-io', ['-f', 'qcow2', '-c', `write -q -s ${src} ${offset} ${data.length}`, s.disk]);
    } finally {
      await fsp.rm(src, { force: true });
    }
  }

  /** A reference copy of the disk's guest-visible content as it is now (`qemu-img convert`, shared). */
  async reference(s: WorldServer, name: string): Promise<string> {
    const file = path.join(this.lab.dir, `${name}.qcow2`);
    await run('qemu-img', ['convert', '-U', '-f', 'qcow2', '-O', 'qcow2', s.disk, file]);
    return file;
  }

  /** `qemu-img compare` of two images' guest-visible content: whether identical, and what it said. */
  async compare(a: string, b: string): Promise<{ identical: boolean; output: string }> {
    const r = spawnSync('qemu-img', ['compare', '-U', '-f', 'qcow2', '-F', 'qcow2', a, b], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    return { identical: r.status === 0, output: `${r.stdout}${r.stderr}`.trim() };
  }

  get url(): string {
    return this.api.url;
  }

  async call(method: string, p: string, body?: unknown) {
    return http(`${this.url}/api/v1/${p}`, { method, headers: this.auth, body });
  }

  /** Waits for an action to finish; returns its API view. */
  async finished(actionId: number, timeoutMs = 180_000): Promise<Json> {
    return eventually(
      async () => {
        const a = (await this.call('GET', `actions/${actionId}/`)).body;
        return a.status === 'succeeded' || a.status === 'failed' ? a : null;
      },
      timeoutMs,
      200,
    );
  }

  /** Creates a backup through the API and waits for its action; returns the backup's view. */
  async backup(s: WorldServer, name: string): Promise<{ action: Json; backup: Json }> {
    const created = await this.call('POST', 'backups/', { server_id: s.id, name });
    if (created.status !== 201) throw new Error(`backup create: ${created.status} ${created.text}`);
    const action = await this.finished(Number(created.body.action_id));
    const backup = (await this.call('GET', `backups/${String(created.body.id)}/`)).body;
    return { action, backup };
  }

  /** Restores a backup onto a server through the API and waits for its action. */
  async restore(backupId: number, target: WorldServer): Promise<Json> {
    const r = await this.call('POST', `backups/${backupId}/restore/`, { server_id: target.id });
    if (r.status !== 200) throw new Error(`backup restore: ${r.status} ${r.text}`);
    return this.finished(Number(r.body.action_id));
  }

  async dispose(): Promise<void> {
    for (const n of this.nodes) await n.worker?.kill();
    await this.api?.close();
    await this.db?.drop();
    await this.lab?.dispose();
  }
}
