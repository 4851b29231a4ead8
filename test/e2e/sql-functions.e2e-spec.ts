/**
 * The SQL functions that hold rules live in prisma/sql/functions, one file each, and prisma/migrate.mjs
 * applies them after the migrations. `node prisma/migrate.mjs --check` is what catches a database whose
 * functions drifted from the files: a body changed by hand, a function left over or missing.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import { createTestDatabase, TestDatabase } from '../support/test-env';

const ROOT = path.resolve(__dirname, '../..');
const FUNCTIONS = path.join(ROOT, 'prisma/sql/functions');
const names = readdirSync(FUNCTIONS)
  .filter((f) => f.endsWith('.sql'))
  .map((f) => f.slice(0, -4));

function migrateJs(db: TestDatabase, ...args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [path.join(ROOT, 'prisma/migrate.mjs'), ...args], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: db.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('error', reject);
    p.on('exit', (code) => resolve({ code, out }));
  });
}

describe('SQL functions: one file each, applied by prisma/migrate.mjs, drift caught', () => {
  let db: TestDatabase;
  let sql: Client;

  beforeAll(async () => {
    db = await createTestDatabase();
    sql = new Client({ connectionString: db.url });
    await sql.connect();
  });
  afterAll(async () => {
    await sql?.end();
    await db?.drop();
  });

  it('the rule functions are defined in their files only, never in a migration', () => {
    expect(names).toEqual(
      expect.arrayContaining([
        'snapshot_create_checked',
        'snapshot_restore_checked',
        'snapshot_delete_checked',
        'api_token_create_checked',
      ]),
    );
    const migrations = path.join(ROOT, 'prisma/migrations');
    for (const dir of readdirSync(migrations).filter((d) => !d.endsWith('.toml'))) {
      const text = readFileSync(path.join(migrations, dir, 'migration.sql'), 'utf8');
      for (const name of names) {
        expect({ dir, name, defines: new RegExp(`FUNCTION\\s+"?${name}"?\\s*\\(`, 'i').test(text) }).toEqual({
          dir,
          name,
          defines: false,
        });
      }
    }
  });

  it('the restore rule, the free-server rule and the Idempotency-Key lookup are each written in one function', () => {
    const text = new Map(names.map((n) => [n, readFileSync(path.join(FUNCTIONS, `${n}.sql`), 'utf8')]));
    const filesWith = (pattern: RegExp) => names.filter((n) => pattern.test(text.get(n)!)).sort();
    expect(filesWith(/SET\s+"status"\s*=\s*'restoring'/i)).toEqual(['server_restore_checked']);
    expect(filesWith(/"idempotency_key_id"\s*=\s*p_key_id/i)).toEqual(['idempotency_key_action']);
    expect(filesWith(/<>\s*'restoring'/)).toEqual(['server_operation_check']);
    // Called (a definition names its function in quotes) by both restores; the check by creates,
    // restores and power actions.
    expect(filesWith(/\bserver_restore_checked\(/)).toEqual([
      'backup_restore_checked',
      'snapshot_restore_checked',
    ]);
    expect(filesWith(/\bserver_operation_check\(/)).toEqual([
      'backup_create_checked',
      'server_power_checked',
      'server_restore_checked',
      'snapshot_create_checked',
    ]);
  });

  it('a migrated database matches the files', async () => {
    const r = await migrateJs(db, '--check');
    expect(r).toEqual({ code: 0, out: 'SQL functions match prisma/sql/functions\n' });
  });

  it('a body changed in the database, a function left over and one missing are each named; migrating again restores those of the files', async () => {
    const create = readFileSync(path.join(FUNCTIONS, 'snapshot_create_checked.sql'), 'utf8');
    const loosened = create.replace('(SELECT n FROM slots) < p_limit', '(SELECT n FROM slots) <= p_limit');
    expect(loosened).not.toBe(create);
    await sql.query(loosened);
    await sql.query('DROP FUNCTION snapshot_delete_checked');
    await sql.query("CREATE FUNCTION left_over_rule() RETURNS int LANGUAGE sql AS 'SELECT 1'");

    const drifted = await migrateJs(db, '--check');
    expect(drifted.code).toBe(1);
    expect(drifted.out.trim().split('\n').sort()).toEqual([
      'left_over_rule: in the database, but no prisma/sql/functions/left_over_rule.sql',
      "snapshot_create_checked: the database's definition differs from prisma/sql/functions/snapshot_create_checked.sql",
      'snapshot_delete_checked: missing from the database (prisma/sql/functions/snapshot_delete_checked.sql)',
    ]);
    // The check changed nothing (its trial run of the files was rolled back).
    const still = await sql.query(
      "SELECT prosrc FROM pg_proc WHERE proname IN ('snapshot_create_checked', 'snapshot_delete_checked')",
    );
    expect(still.rows).toHaveLength(1);
    expect(still.rows[0].prosrc).toContain('<= p_limit');

    const migrated = await migrateJs(db);
    expect(migrated.code).toBe(0);
    const after = await migrateJs(db, '--check');
    expect(after).toEqual({
      code: 1,
      out: 'left_over_rule: in the database, but no prisma/sql/functions/left_over_rule.sql\n',
    });
    await sql.query('DROP FUNCTION left_over_rule');
    expect(await migrateJs(db, '--check')).toMatchObject({ code: 0 });
  });
});
