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
import { existsSync, promises as fsp, statSync } from 'node:fs';
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

async function accountNames(db: TestDatabase): Promise<string[]> {
  const c = new Client({ connectionString: db.url });
  await c.connect();
  try {
    return (await c.query<{ name: string }>('SELECT name FROM accounts ORDER BY name')).rows.map(
      (r) => r.name,
    );
  } finally {
    await c.end();
  }
}

describe('operator CLI after `npm run local`: the database comes from the local stack', () => {
  let checkout: string;
  let envFile: string;
  let stackDb: TestDatabase;
  let otherDb: TestDatabase;
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
      },
    );
    expect(saved).toEqual({ code: 0, stdout: `${envFile}\n`, stderr: '' });
  });

  afterAll(async () => {
    if (checkout) await fsp.rm(checkout, { recursive: true, force: true });
    await stackDb?.drop();
    await otherDb?.drop();
  });

  it('records the stack in .local/local.env, readable by its owner only', () => {
    expect(statSync(envFile).mode & 0o777).toBe(0o600);
  });

  it("runs the README's operator lines with nothing set, saying on stderr which database it uses", async () => {
    const account = await cli(['account', 'create', 'acme']);
    expect(account).toEqual({
      code: 0,
      stdout: expect.stringMatching(/^\d+\n$/),
      stderr: expect.any(String),
    });
    expect(account.stderr).toContain(envFile);
    expect(account.stderr).toContain(stackDb.name);

    const token = await cli([
      'token',
      'create',
      '--account',
      'acme',
      '--scopes',
      'read,write',
      '--expires-in',
      '30d',
    ]);
    expect(token.stdout).toMatch(/^vps_[0-9A-Za-z]{40}\n$/);
    const node = await cli([
      'node',
      'create',
      'hv1',
      '--driver',
      'libvirt',
      '--uri',
      'qemu:///system',
      '--snapshot-dir',
      '/var/lib/vps/snapshots',
    ]);
    expect(node.stdout).toMatch(/^\d+\n$/);
    const listed = await cli(['account', 'list']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain('acme');

    expect(await accountNames(stackDb)).toContain('acme');
  });

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
