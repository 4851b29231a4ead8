#!/usr/bin/env node
/**
 * The one way a database is migrated (`npm run migrate`, scripts/local.sh, the test template, bench/,
 * docker/ and k8s/ all run this file):
 *
 *   node prisma/migrate.mjs           `prisma migrate deploy` (prisma/migrations: tables, indexes, triggers),
 *                                    then every prisma/sql/functions/<name>.sql
 *   node prisma/migrate.mjs --check   exit 1, naming them, when the database's functions differ from the files
 *
 * The SQL functions that hold rules (snapshot_create_checked, …) live in one file each, as
 * `CREATE OR REPLACE FUNCTION "<name>"`: a rule change edits that file and nothing else. Prisma does not
 * model functions, and a migration is history written once, so the files are applied after the
 * migrations, every time, in one transaction (idempotent; an advisory lock keeps two runs from racing).
 * A change of a function's arguments or result columns needs a migration that drops the old function
 * first (CREATE OR REPLACE cannot change them). Plain JavaScript, so it runs without a build: from the
 * API image, whose root filesystem is read-only, as well as from a checkout.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const FUNCTIONS_DIR = path.join(HERE, 'sql', 'functions');
/** Serialises concurrent runs' function steps (two migrate jobs of one deployment). */
const LOCK_KEY = "hashtext('admin-vps:sql-functions')";

/** The function files, by name; each must define exactly the function its name says. */
export function functionFiles() {
  return readdirSync(FUNCTIONS_DIR)
    .filter((f) => f.endsWith('.sql'))
    .sort()
    .map((f) => {
      const name = f.slice(0, -'.sql'.length);
      const sql = readFileSync(path.join(FUNCTIONS_DIR, f), 'utf8');
      const defined = [...sql.matchAll(/CREATE\s+OR\s+REPLACE\s+FUNCTION\s+"?(\w+)"?\s*\(/gi)].map(
        (m) => m[1],
      );
      if (defined.length !== 1 || defined[0] !== name) {
        throw new Error(`prisma/sql/functions/${f} must hold one CREATE OR REPLACE FUNCTION "${name}"`);
      }
      return { name, file: `prisma/sql/functions/${f}`, sql };
    });
}

/**
 * Every plain function of the current schema, with its full definition, except trigger functions (they
 * are created with their triggers, in migrations) and those an extension owns.
 */
const DEFINITIONS = `
  SELECT p.proname AS name, pg_get_functiondef(p.oid) AS def
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.nspname = current_schema() AND p.prokind = 'f' AND p.prorettype <> 'trigger'::regtype
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                    AND d.deptype = 'e')
  ORDER BY 1, 2`;

async function withClient(databaseUrl, fn) {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Runs fn in a transaction that holds the lock, committing or rolling back as asked. */
async function inTransaction(client, commit, fn) {
  await client.query('BEGIN');
  try {
    await client.query(`SELECT pg_advisory_xact_lock(${LOCK_KEY})`);
    // The files are applied in name order, and one function's body may call another defined in a later
    // file (server_holding_action): check bodies when they run, not when they are created (as pg_dump does).
    await client.query('SET LOCAL check_function_bodies = off');
    const out = await fn();
    await client.query(commit ? 'COMMIT' : 'ROLLBACK');
    return out;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

/** (Re)creates every function from its file, all or none. */
export async function applyFunctions(databaseUrl, files = functionFiles()) {
  await withClient(databaseUrl, (client) =>
    inTransaction(client, true, async () => {
      for (const f of files) await client.query(f.sql);
    }),
  );
}

/**
 * What differs between the database's functions and the files, one line each (empty: nothing). Each
 * file is applied inside a transaction that is rolled back, and the definitions before and after are
 * compared: whatever PostgreSQL would store from the file (body, arguments, result, volatility) counts.
 */
export async function functionDrift(databaseUrl, files = functionFiles()) {
  const byName = (rows) => {
    const m = new Map();
    for (const r of rows) m.set(r.name, [...(m.get(r.name) ?? []), r.def]);
    return m;
  };
  return withClient(databaseUrl, (client) =>
    inTransaction(client, false, async () => {
      const before = byName((await client.query(DEFINITIONS)).rows);
      for (const f of files) await client.query(f.sql);
      const after = byName((await client.query(DEFINITIONS)).rows);
      const problems = [];
      const known = new Set(files.map((f) => f.name));
      for (const f of files) {
        const was = before.get(f.name) ?? [];
        if (was.length === 0) problems.push(`${f.name}: missing from the database (${f.file})`);
        else if (JSON.stringify(was) !== JSON.stringify(after.get(f.name))) {
          problems.push(`${f.name}: the database's definition differs from ${f.file}`);
        }
      }
      for (const name of before.keys()) {
        if (!known.has(name))
          problems.push(`${name}: in the database, but no prisma/sql/functions/${name}.sql`);
      }
      return problems;
    }),
  );
}

/** `prisma migrate deploy` with this checkout's configuration (prisma.config.ts), no shell. */
function migrateDeploy(env) {
  const cli = createRequire(import.meta.url).resolve('prisma/build/index.js');
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [cli, 'migrate', 'deploy'], { cwd: ROOT, env, stdio: 'inherit' });
    p.on('error', reject);
    p.on('exit', (code, signal) =>
      code === 0
        ? resolve()
        : reject(new Error(`prisma migrate deploy failed (${signal ?? `exit ${code}`})`)),
    );
  });
}

/** The schema, then the functions: what every caller means by "migrate". */
export async function migrate(env = process.env) {
  const databaseUrl = env.DATABASE_URL;
  if (!databaseUrl)
    throw new Error('DATABASE_URL is not set (e.g. postgresql://postgres@127.0.0.1:55432/vps)');
  const files = functionFiles(); // a malformed file stops the run before anything is changed
  await migrateDeploy(env);
  await applyFunctions(databaseUrl, files);
  return files.length;
}

async function main(args) {
  if (args[0] === '--check') {
    if (!process.env.DATABASE_URL) throw new Error('DATABASE_URL is not set');
    const problems = await functionDrift(process.env.DATABASE_URL);
    for (const p of problems) process.stderr.write(`${p}\n`);
    if (problems.length === 0) process.stdout.write('SQL functions match prisma/sql/functions\n');
    return problems.length === 0 ? 0 : 1;
  }
  if (args.length > 0) {
    process.stderr.write('usage: node prisma/migrate.mjs [--check]\n');
    return 2;
  }
  const n = await migrate();
  process.stdout.write(`Applied ${n} SQL functions from prisma/sql/functions\n`);
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
