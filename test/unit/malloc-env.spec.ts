/**
 * The roles' glibc malloc settings (src/app/malloc-env.ts): the decision from the environment, and the
 * real restart in a child process — glibc must see the settings in the environment the process started
 * with (`/proc/self/environ`), the same pid must go on, and the tools it starts must not inherit them.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MALLOC_ENV, MALLOC_ENV_ADDED, mallocEnvStep } from '../../src/app/malloc-env';

const ROOT = path.resolve(__dirname, '../..');

interface Seen {
  pid: number;
  starts: number;
  /** The environment this process image was started with: what glibc read. */
  environ: Record<string, string>;
  /** process.env after the call: what children inherit. */
  env: Record<string, string | undefined>;
  /** What a child shell sees. */
  child: string;
}

/** Runs applyMallocEnv(enabled) in a fresh Node process with `env` and reports what it saw. */
function run(env: Record<string, string>, enabled: boolean): { pid: number; seen: Seen } {
  const script = `
    const fs = require('node:fs');
    const starts = Number(fs.readFileSync(process.argv[1], 'utf8') || 0) + 1;
    fs.writeFileSync(process.argv[1], String(starts));
    require(${JSON.stringify(path.join(ROOT, 'src/app/malloc-env.ts'))}).applyMallocEnv(${enabled});
    const environ = Object.fromEntries(fs.readFileSync('/proc/self/environ', 'utf8').split('\\0').filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    const names = [...Object.keys(${JSON.stringify(MALLOC_ENV)}), ${JSON.stringify(MALLOC_ENV_ADDED)}];
    const child = require('node:child_process').execFileSync('sh', ['-c', 'env | grep -E "^(MALLOC_|VPS_MALLOC)" | sort || true'], { encoding: 'utf8' });
    process.stdout.write(JSON.stringify({ pid: process.pid, starts, environ,
      env: Object.fromEntries(names.map((n) => [n, process.env[n]])), child }));`;
  // Counts the starts of the script: 2 when it restarted itself.
  const counter = path.join(os.tmpdir(), `malloc-env-${process.pid}-${Date.now()}`);
  fs.writeFileSync(counter, '');
  const res = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script, counter], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { PATH: process.env.PATH, TS_NODE_PROJECT: path.join(ROOT, 'tsconfig.json'), ...env },
  });
  fs.rmSync(counter, { force: true });
  if (res.status !== 0) throw new Error(`child failed (${res.status}): ${res.stderr}`);
  return { pid: res.pid ?? 0, seen: JSON.parse(res.stdout) as Seen };
}

describe('malloc settings of the roles', () => {
  it('decides: restart with the missing ones, keep what is set, never twice, nothing when off', () => {
    const first = mallocEnvStep({ PATH: '/bin' }, true);
    expect(first).toEqual({
      kind: 'restart',
      env: { PATH: '/bin', ...MALLOC_ENV, [MALLOC_ENV_ADDED]: Object.keys(MALLOC_ENV).join(',') },
    });
    if (first.kind !== 'restart') throw new Error('unreachable');
    expect(mallocEnvStep(first.env, true)).toEqual({
      kind: 'continue',
      remove: [...Object.keys(MALLOC_ENV), MALLOC_ENV_ADDED],
    });
    // The marker names only the settings: it cannot be used to unset anything else.
    expect(mallocEnvStep({ [MALLOC_ENV_ADDED]: 'PATH,MALLOC_ARENA_MAX' }, true)).toEqual({
      kind: 'continue',
      remove: ['MALLOC_ARENA_MAX', MALLOC_ENV_ADDED],
    });
    expect(mallocEnvStep({ ...MALLOC_ENV }, true)).toEqual({ kind: 'continue', remove: [] });
    expect(mallocEnvStep({ MALLOC_ARENA_MAX: '4' }, true)).toEqual({ kind: 'continue', remove: [] });
    expect(mallocEnvStep({}, false)).toEqual({ kind: 'continue', remove: [] });
  });

  it('restarts the process once, same pid, with the settings in its start-up environment; children do not inherit them', () => {
    const { pid, seen } = run({}, true);
    expect(seen.pid).toBe(pid);
    expect(seen.starts).toBe(2);
    for (const [name, value] of Object.entries(MALLOC_ENV)) expect(seen.environ[name]).toBe(value);
    expect(Object.values(seen.env).every((v) => v === undefined)).toBe(true);
    expect(seen.child).toBe('');
  }, 120_000);

  it("keeps an operator's own value, which children still inherit", () => {
    const { seen } = run({ MALLOC_ARENA_MAX: '4' }, true);
    expect(seen.starts).toBe(1);
    expect(seen.environ.MALLOC_ARENA_MAX).toBe('4');
    expect(seen.env.MALLOC_ARENA_MAX).toBe('4');
    expect(seen.child).toBe('MALLOC_ARENA_MAX=4\n');
  }, 120_000);

  it('does nothing with MALLOC_TUNING=false', () => {
    const { seen } = run({}, false);
    expect(seen.starts).toBe(1);
    expect(Object.keys(seen.environ).filter((n) => n.startsWith('MALLOC_'))).toEqual([]);
  }, 120_000);
});
