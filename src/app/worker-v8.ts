import { setFlagsFromString } from 'node:v8';

/**
 * V8 settings of the worker role, which is I/O-bound (the copies run in qemu-img; the worker reads
 * their progress and writes a few rows per job), so it trades a little CPU for resident memory
 * (measured side by side: bench/worker-memory.mjs for RSS, bench/queue-ab.mjs for the queue path):
 * - `--liftoff-only`: Prisma's query compiler is WebAssembly; by default V8 also recompiles its hot
 *   functions with its optimising compiler in background threads, and that code and the compilers'
 *   memory stay resident (~20 MB). The baseline compiler's code is slower, and the worker's queries few.
 * - `--semi-space-growth-factor=1`: the young generation keeps its initial 1 MB semi-spaces instead of
 *   growing to 16 MB while the modules load and never shrinking back (~14 MB).
 * - `--heap-growing-percent=20`: as in the API (api-v8.ts), the old generation grows to 1.2× its live
 *   size between full collections, not up to 4×: with 1 MB semi-spaces, the objects of the S3 client's
 *   requests in flight are promoted. The production worker's peak in a full backup of 2 GiB: 180–181 MB
 *   on an S3 store against 194–199 MB without it, 163 MB on a directory store against 170–173 MB, its
 *   time unchanged on the directory store (bench/backup.mjs, worker part; docs/benchmarks.md section 6).
 * The API has its own (api-v8.ts).
 */
export const WORKER_V8_FLAGS = [
  '--liftoff-only',
  '--semi-space-growth-factor=1',
  '--heap-growing-percent=20',
] as const;

/**
 * Applies WORKER_V8_FLAGS to this process. Call it before the worker's modules are loaded (the young
 * generation grows while they load, and does not shrink afterwards) and before Prisma compiles its
 * WebAssembly (the compiler flags apply to modules compiled afterwards).
 */
export function applyWorkerV8Flags(): void {
  for (const flag of WORKER_V8_FLAGS) setFlagsFromString(flag);
}
