/**
 * Per-test-file environment on the real services: a fresh database copied from the migrated template,
 * a private BullMQ key prefix in Redis, and the API (and optionally a worker) built exactly as in
 * production.
 */
import { INestApplication, INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { createHttpApp } from '../../src/app/http-app';
import { WorkerModule } from '../../src/app/worker.module';
import { AppConfig, loadConfig, Role } from '../../src/config/app-config';
import { PrismaService } from '../../src/prisma/prisma.service';

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUrl = process.env.DATABASE_ADMIN_URL;
  const template = process.env.TEST_TEMPLATE_DB;
  if (!adminUrl || !template)
    throw new Error('run through jest (global setup prepares DATABASE_ADMIN_URL and the template)');
  const name = `vps_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}" TEMPLATE "${template}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    async drop() {
      const c = new Client({ connectionString: adminUrl });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/** The workers' backup master key in tests (one per test process). */
export const TEST_BACKUP_MASTER_KEY = randomBytes(32).toString('base64');
export const TEST_WEBHOOK_SECRET_KEY = randomBytes(32).toString('base64');

/** The workers' `default` backup store in tests: a directory per test process, removed when it exits. */
export const TEST_BACKUP_DIR = mkdtempSync(path.join(os.tmpdir(), 'vps-test-backups-'));
process.once('exit', () => rmSync(TEST_BACKUP_DIR, { recursive: true, force: true }));

export function testConfig(db: TestDatabase, role: Role, env: Record<string, string> = {}): AppConfig {
  return loadConfig(
    {
      DATABASE_URL: db.url,
      REDIS_URL: process.env.REDIS_URL,
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      QUEUE_PREFIX: `test-${db.name}`,
      JOB_BACKOFF_MS: '50',
      DISPATCH_INTERVAL_MS: '200',
      PROGRESS_WRITE_INTERVAL_MS: '0',
      STOP_GRACE_SECONDS: '1',
      // Tests fire many requests from one token; the rate-limit tests set their own limits.
      RATE_LIMIT_PER_MINUTE: '1000000',
      RATE_LIMIT_WRITES_PER_MINUTE: '1000000',
      RATE_LIMIT_ACCOUNT_PER_MINUTE: '1000000',
      RATE_LIMIT_ACCOUNT_WRITES_PER_MINUTE: '1000000',
      // Suites send many made-up tokens from 127.0.0.1; test/e2e/unauthenticated-load sets its own bound.
      AUTH_FAILURES_PER_SOURCE_PER_MINUTE: '0',
      BACKUP_MASTER_KEY: TEST_BACKUP_MASTER_KEY,
      WEBHOOK_SECRET_KEY: TEST_WEBHOOK_SECRET_KEY,
      BACKUP_DIR: TEST_BACKUP_DIR,
      // The schedule's tests drive the scheduler with their own clock; no other test wants its timer.
      BACKUP_SCHEDULER_INTERVAL_MS: '0',
      // The fake driver defines the servers' domains stopped whatever their rows say: reconciling would
      // rewrite the statuses tests set up; test/e2e/power-state turns it on.
      POWER_STATE_INTERVAL_MS: '0',
      ...env,
    },
    role,
  );
}

export interface TestApi {
  app: INestApplication;
  /** Base URL such as http://127.0.0.1:43123 */
  url: string;
  prisma: PrismaService;
  close(): Promise<void>;
}

export async function startApi(config: AppConfig): Promise<TestApi> {
  const app = await createHttpApp(config);
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address() as { port: number };
  return {
    app,
    url: `http://127.0.0.1:${address.port}`,
    prisma: app.get(PrismaService),
    close: () => app.close(),
  };
}

export async function startWorker(config: AppConfig): Promise<INestApplicationContext> {
  const ctx = await NestFactory.createApplicationContext(WorkerModule.forConfig(config), { logger: false });
  await ctx.init();
  return ctx;
}

/** Polls `probe` until it returns a truthy value (or throws after `timeoutMs`). */
export async function eventually<T>(
  probe: () => Promise<T | null | undefined | false>,
  timeoutMs = 15_000,
  stepMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, stepMs));
  }
  throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
}
