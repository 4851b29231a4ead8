/**
 * glibc malloc settings of each long-running role, in this one place for every way the product is
 * started (`node dist/main.js <role>` in the Docker images, the Kubernetes manifests, `npm run local`,
 * the tests and the benchmarks). glibc reads them from the environment once, when the process makes its
 * first allocation, long before any JavaScript runs, so they cannot be applied with `setFlagsFromString`
 * as the V8 flags are: the entry point starts Node again in the same process (`process.execve`: same
 * pid, arguments, stdin/stdout/stderr) with the missing ones added, and then takes them out of its own
 * environment again, so the tools the worker runs (qemu-img, qemu-io, virsh) keep glibc's defaults.
 * A variable already set in the environment is left as it is (an operator's own value wins);
 * MALLOC_TUNING=false turns the whole thing off.
 *
 * - `MALLOC_ARENA_MAX=2`: glibc gives threads that allocate arenas of their own (up to 8 per core),
 *   and memory freed in one arena is not reused by another; Node's threads (libuv's pool, V8's platform
 *   threads) each kept a few MB of it.
 * Not set, although they lower the worker's peak during a backup by 40–60 MB: `MALLOC_MMAP_THRESHOLD_`
 * and `MALLOC_TRIM_THRESHOLD_` (either fixes the mmap threshold at 128 KiB, so every 4 MiB chunk buffer
 * is mapped, faulted in page by page and unmapped again): the backup took 1.8–2.8× as long.
 * Measured side by side in docs/benchmarks.md (sections 5 and 6).
 */
export const MALLOC_ENV = {
  MALLOC_ARENA_MAX: '2',
} as const;

/**
 * Names the variables the restart added (comma-separated); present only in the restarted process, which
 * removes them and this marker from its environment. Its presence also means "already restarted": the
 * entry point never restarts twice.
 */
export const MALLOC_ENV_ADDED = 'VPS_MALLOC_ENV_ADDED';

type Env = Readonly<Record<string, string | undefined>>;

/** What the entry point does about the malloc settings: start again with `env`, or go on (after removing `remove`). */
export type MallocEnvStep =
  | { readonly kind: 'restart'; readonly env: Record<string, string> }
  | { readonly kind: 'continue'; readonly remove: readonly string[] };

/** Decides the step from the environment; no side effects. */
export function mallocEnvStep(env: Env, enabled: boolean): MallocEnvStep {
  const added = env[MALLOC_ENV_ADDED];
  if (added !== undefined) {
    const names = added.split(',').filter((n) => n in MALLOC_ENV);
    return { kind: 'continue', remove: [...names, MALLOC_ENV_ADDED] };
  }
  if (!enabled) return { kind: 'continue', remove: [] };
  const missing = Object.entries(MALLOC_ENV).filter(([name]) => env[name] === undefined);
  if (missing.length === 0) return { kind: 'continue', remove: [] };
  const next: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) if (value !== undefined) next[name] = value;
  for (const [name, value] of missing) next[name] = value;
  next[MALLOC_ENV_ADDED] = missing.map(([name]) => name).join(',');
  return { kind: 'restart', env: next };
}

/**
 * Applies MALLOC_ENV to this process: restarts Node with them when they are missing (this call then
 * does not return), or, in the restarted process, removes them from the environment children inherit.
 * Call it first thing, before anything is written or opened: only stdin, stdout and stderr survive
 * the restart. Where `process.execve` is missing (not Linux) or fails, the process goes on without them.
 */
export function applyMallocEnv(enabled: boolean): void {
  const step = mallocEnvStep(process.env, enabled);
  if (step.kind === 'continue') {
    for (const name of step.remove) delete process.env[name];
    return;
  }
  // Node ≥ 22.15 on POSIX systems; the installed @types/node does not declare it yet.
  const { execve } = process as NodeJS.Process & {
    execve?: (file: string, args: readonly string[], env: Record<string, string>) => never;
  };
  if (typeof execve !== 'function') return;
  try {
    execve.call(
      process,
      process.execPath,
      [process.execPath, ...process.execArgv, ...process.argv.slice(1)],
      step.env,
    );
  } catch (e) {
    process.stderr.write(
      `malloc settings not applied (restart failed: ${e instanceof Error ? e.message : String(e)}); going on without them\n`,
    );
  }
}
