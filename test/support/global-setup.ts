/**
 * Once per `jest` run (e2e project): make sure PostgreSQL and Redis answer, and migrate a template
 * database once (prisma/migrate.mjs, as every deployment migrates). Each test file then gets its own copy
 * (`CREATE DATABASE … TEMPLATE …`), because migrating costs ~11 s and a copy well under a second.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';

const ROOT = path.resolve(__dirname, '../..');

/** What the template is built from: the migrations, the SQL functions and the step that applies them. */
function migrationsHash(): string {
  const h = createHash('sha256');
  const migrations = path.join(ROOT, 'prisma/migrations');
  for (const name of readdirSync(migrations).sort()) {
    if (name.endsWith('.toml')) continue;
    h.update(name).update(readFileSync(path.join(migrations, name, 'migration.sql')));
  }
  const functions = path.join(ROOT, 'prisma/sql/functions');
  for (const name of readdirSync(functions).sort())
    h.update(name).update(readFileSync(path.join(functions, name)));
  h.update(readFileSync(path.join(ROOT, 'prisma/migrate.mjs')));
  return h.digest('hex').slice(0, 12);
}

export default async function globalSetup(): Promise<void> {
  if (!process.env.DATABASE_ADMIN_URL || !process.env.REDIS_URL) {
    // Run outside `npm test`: start (or reuse) the local services ourselves.
    execFileSync('bash', [path.join(ROOT, 'scripts/services.sh'), 'start', 'postgres', 'redis'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const env = execFileSync('bash', [path.join(ROOT, 'scripts/services.sh'), 'env'], { encoding: 'utf8' });
    for (const m of env.matchAll(/^export (\w+)=(.*)$/gm))
      process.env[m[1]] ??= m[2].replace(/^'(.*)'$/, '$1');
  }
  const adminUrl = process.env.DATABASE_ADMIN_URL!;
  const template = `vps_template_${migrationsHash()}`;
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [template]);
    if (exists.rowCount === 0) {
      const building = `${template}_building_${process.pid}`;
      await admin.query(`DROP DATABASE IF EXISTS "${building}"`);
      await admin.query(`CREATE DATABASE "${building}"`);
      const url = new URL(adminUrl);
      url.pathname = `/${building}`;
      execFileSync(process.execPath, [path.join(ROOT, 'prisma/migrate.mjs')], {
        cwd: ROOT,
        env: { ...process.env, DATABASE_URL: url.toString() },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      await admin.query(`ALTER DATABASE "${building}" RENAME TO "${template}"`);
    }
    // Leftovers of earlier, interrupted runs: databases whose creating process is gone.
    const stale = await admin.query("SELECT datname FROM pg_database WHERE datname LIKE 'vps_test_%'");
    for (const row of stale.rows as { datname: string }[]) {
      const pid = Number(/^vps_test_(\d+)_/.exec(row.datname)?.[1]);
      if (pid && !processAlive(pid)) {
        await admin.query(`DROP DATABASE IF EXISTS "${row.datname}" WITH (FORCE)`).catch(() => undefined);
      }
    }
  } finally {
    await admin.end();
  }
  process.env.TEST_TEMPLATE_DB = template;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
