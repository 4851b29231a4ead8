import { setFlagsFromString } from 'node:v8';

/**
 * V8 settings of the API role (measured side by side, docs/benchmarks.md §5):
 * - `--semi-space-growth-factor=1`: the young generation keeps its initial 1 MB semi-spaces instead
 *   of growing to 16 MB while the modules load and under load. Resident memory under the read
 *   benchmark went from 208–260 MB to ~150 MB; the hot read path allocates little per request, so the
 *   extra scavenges cost little throughput (within the run-to-run noise of this machine).
 * Unlike the worker, the API keeps the optimising WebAssembly compiler: Prisma's query compiler runs
 * on every request that goes through the Nest pipeline.
 */
export const API_V8_FLAGS = ['--semi-space-growth-factor=1'] as const;

/** Applies API_V8_FLAGS; call it before the API's modules are loaded (see worker-v8.ts for why). */
export function applyApiV8Flags(): void {
  for (const flag of API_V8_FLAGS) setFlagsFromString(flag);
}
