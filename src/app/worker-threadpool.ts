/**
 * Threads of libuv's pool in the worker role. Each file system call of a backup holds one of them
 * for its whole duration: a chunk's read of the disk and its O_DIRECT write (milliseconds each, the
 * disk's latency), the fsyncs, opens and renames. With libuv's default of 4, a write or a restore with more chunks
 * in flight than that (CHUNKS_IN_FLIGHT) queues its disk requests behind each other in the
 * process, not in the disk; this leaves room for those and for a batch's fsyncs beside them. An
 * operator's own UV_THREADPOOL_SIZE wins. Measured in docs/benchmarks.md (section 6).
 */
export const WORKER_THREADPOOL_SIZE = 8;

/**
 * Sets libuv's pool size for this process. libuv reads it once, when the pool first takes work: call
 * it before anything reads or writes a file asynchronously.
 */
export function applyWorkerThreadpool(env: NodeJS.ProcessEnv = process.env): void {
  env.UV_THREADPOOL_SIZE ??= String(WORKER_THREADPOOL_SIZE);
}
