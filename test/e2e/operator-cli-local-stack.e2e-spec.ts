/**
 * After `npm run local`, the README's operator CLI lines work as printed in another terminal, with
 * nothing set there: the local stack records its database in the checkout's `.local/local.env`
 * (`cli local-env save`, run by scripts/local.sh) and the built CLI takes it from there when
 * DATABASE_URL is unset, saying so on stderr; an explicit DATABASE_URL always wins.
 *
 * The built CLI finds that file beside its own dist/, so it runs here from a scratch checkout (a copy
 * of dist/, package.json and node_modules linked) whose `.local/` this test owns; this checkout's own
 * `.local/local.env`, if `npm run local` ran here, is never touched.
 */
import { spawn } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync, statSync } from 'node:fs';
import * as os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { createTestDatabase, TestDatabase } from '../support/test-env';

const ROOT = path.resolve(__dirname, '../..');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function query<T extends object>(db: TestDatabase, sql: string): Promise<T[]> {
  const c = new Client({ connectionString: db.url });
  await c.connect();
  try {
    return (await c.query<T>(sql)).rows;
  } finally {
    await c.end();
  }
}

async function accountNames(db: TestDatabase): Promise<string[]> {
  return (await query<{ name: string }>(db, 'SELECT name FROM accounts ORDER BY name')).map((r) => r.name);
}

/** The README's operator lines: the first `sh` block of its "Operator CLI" section, as printed. */
function readmeOperatorBlock(): string {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Operator CLI\n'));
  const block = /\n```sh\n([\s\S]*?)\n```\n/.exec(section);
  if (!block) throw new Error('README.md: no sh block under "## Operator CLI"');
  return block[1];
}

/** Where scripts/local.sh keeps its node's disks and snapshots (paths.sh: the checkout's image folder). */
const LOCAL_IMAGES = '/var/lib/libvirt/images/admin-vps-0123456789ab';

describe('operator CLI after `npm run local`: the database comes from the local stack', () => {
  let checkout: string;
  let envFile: string;
  let stackDb: TestDatabase;
  let otherDb: TestDatabase;
  let backupDir: string;
  /** Another terminal: a login shell's variables, none of the stack's. */
  const terminal = (): NodeJS.ProcessEnv => ({ PATH: process.env.PATH, HOME: process.env.HOME });
  /** As the README prints it: `npm run --silent cli -- …`, from the checkout. */
  const cli = (args: string[], env: NodeJS.ProcessEnv = terminal()) =>
    run('npm', ['run', '--silent', 'cli', '--', ...args], checkout, env);

  beforeAll(async () => {
    if (!existsSync(path.join(ROOT, 'dist/cli/main.js')))
      throw new Error('dist/ is missing: run `npm run build` first');
    [stackDb, otherDb] = await Promise.all([createTestDatabase(), createTestDatabase()]);
    checkout = await fsp.mkdtemp(path.join(os.tmpdir(), 'vpstest-cli-checkout-'));
    await fsp.cp(path.join(ROOT, 'dist'), path.join(checkout, 'dist'), { recursive: true });
    await fsp.copyFile(path.join(ROOT, 'package.json'), path.join(checkout, 'package.json'));
    await fsp.symlink(path.join(ROOT, 'node_modules'), path.join(checkout, 'node_modules'));
    envFile = path.join(checkout, '.local', 'local.env');
    backupDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vpstest-cli-backups-'));
    // What scripts/local.sh runs once its stack is up.
    const saved = await run(
      process.execPath,
      [path.join(checkout, 'dist/cli/main.js'), 'local-env', 'save'],
      checkout,
      {
        ...terminal(),
        DATABASE_URL: stackDb.url,
        REDIS_URL: process.env.REDIS_URL,
        QUEUE_PREFIX: 'vps-local',
        BACKUP_DIR: backupDir,
      },
    );
    expect(saved).toEqual({ code: 0, stdout: `${envFile}\n`, stderr: '' });
  });

  afterAll(async () => {
    if (checkout) await fsp.rm(checkout, { recursive: true, force: true });
    if (backupDir) await fsp.rm(backupDir, { recursive: true, force: true });
    await stackDb?.drop();
    await otherDb?.drop();
  });

  it('records the stack in .local/local.env, readable by its owner only', () => {
    expect(statSync(envFile).mode & 0o777).toBe(0o600);
  });

  it("runs the README's operator block as printed, with nothing set, saying on stderr which database it uses", async () => {
    // What scripts/local.sh seeds before the operator opens another terminal (its libvirt node: a
    // snapshot directory and an image root inside the image folder the README's node takes whole).
    expect(await cli(['account', 'create', 'demo', '--if-missing'])).toMatchObject({ code: 0 });
    const localNode = ['node', 'create', 'local-libvirt', '--driver', 'libvirt', '--uri', 'qemu:///system'];
    const layout = ['--snapshot-dir', `${LOCAL_IMAGES}/snapshots`, '--image-root', `${LOCAL_IMAGES}/disks`];
    expect(await cli([...localNode, ...layout])).toMatchObject({ code: 0 });
    const block = readmeOperatorBlock();
    expect(block).toContain('npm run --silent cli -- account create acme');
    // One shell, as a user pastes the block: `$TOKEN` of one line is used by a later one; the first
    // line that fails stops it and is named.
    const script = `set -eo pipefail\ntrap 'echo "README line failed: $BASH_COMMAND" >&2' ERR\n${block}`;
    const ran = await run('bash', ['-c', script], checkout, terminal());
    expect({ code: ran.code, failed: ran.stderr.match(/README line failed: .*/)?.[0] }).toEqual({
      code: 0,
      failed: undefined,
    });
    expect(ran.stderr).toContain(envFile);
    expect(ran.stderr).toContain(stackDb.name);
    expect(ran.stdout).toMatch(/^vps_[0-9A-Za-z]{40}$/m); // the admin token
    expect(ran.stdout).toMatch(/^store default: /m); // reindex reached the stack's backup directory

    expect(await accountNames(stackDb)).toEqual(expect.arrayContaining(['acme', 'demo', 'ops']));
    const rows = await query<{ name: string; revoked: boolean }>(
      stackDb,
      `SELECT a.name, t.revoked_at IS NOT NULL AS revoked FROM api_tokens t JOIN accounts a ON a.id = t.account_id
        WHERE a.name IN ('acme', 'ops') ORDER BY a.name`,
    );
    expect(rows).toEqual([
      { name: 'acme', revoked: true },
      { name: 'ops', revoked: false },
    ]);
    expect(await query(stackDb, `SELECT name FROM nodes WHERE name = 'hv1'`)).toEqual([{ name: 'hv1' }]);
  }, 300_000); // 13 CLI processes (npm, node, Prisma), each several seconds on a busy machine

  it('an explicit DATABASE_URL wins over the recorded one, silently', async () => {
    const created = await cli(['account', 'create', 'explicit-co'], {
      ...terminal(),
      DATABASE_URL: otherDb.url,
    });
    expect(created).toEqual({ code: 0, stdout: expect.stringMatching(/^\d+\n$/), stderr: '' });
    expect(await accountNames(otherDb)).toEqual(['explicit-co']);
    expect(await accountNames(stackDb)).not.toContain('explicit-co');
  });

  it('without the file and without DATABASE_URL, says how to get one (exit 78)', async () => {
    await fsp.rm(envFile);
    const res = await cli(['account', 'list']);
    expect(res.code).toBe(78);
    expect(res.stdout).toBe('');
    expect(res.stderr).toContain('DATABASE_URL is required but not set');
    expect(res.stderr).toContain('npm run local');
  });
});
