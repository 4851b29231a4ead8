import { setFlagsFromString } from 'node:v8';

/**
 * V8 settings of the API role (measured side by side, docs/benchmarks.md §5):
 * - `--semi-space-growth-factor=1`: the young generation keeps its initial 1 MB semi-spaces instead
 *   of growing to 16 MB while the modules load and under load. Resident memory under the read
 *   benchmark went from 208–260 MB to ~150 MB; the hot read path allocates little per request, so the
 *   extra scavenges cost little throughput (within the run-to-run noise of this machine).
 * - `--heap-growing-percent=20`: after each full collection V8 lets the old generation grow to its live
 *   size times a factor it derives from the allocation rate, up to 4× for a heap limit this large.
 *   With 1 MB semi-spaces, objects of requests in flight at a scavenge are promoted, so at a high
 *   request rate the old generation filled with garbage from ~47 MB live to ~155 MB before the next
 *   full collection (RSS 221–261 MB). A fixed 1.2 (V8 adds at least 8 MB), side by side under the
 *   same load: old space ≤ 46 MB, RSS max 156 against 258 MB; the extra full collections were ~4 a
 *   minute, ~15 ms of pause each (the marking runs concurrently).
 * Unlike the worker, the API keeps the optimising WebAssembly compiler: Prisma's query compiler runs
 * on every request that goes through the Nest pipeline.
 */
export const API_V8_FLAGS = ['--semi-space-growth-factor=1', '--heap-growing-percent=20'] as const;

/** Applies API_V8_FLAGS; call it before the API's modules are loaded (see worker-v8.ts for why). */
export function applyApiV8Flags(): void {
  for (const flag of API_V8_FLAGS) setFlagsFromString(flag);
}
