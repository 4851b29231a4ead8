/**
 * Runs steps of a disk operation at the same time (e.g. an fsync, which waits on the disk, next to a
 * sha256 pass, which waits on the CPU) without giving up what running them one after the other
 * guaranteed:
 * - every step gets a signal that aborts when the caller's signal aborts or when any step fails, so a
 *   failure stops the other steps' child processes and reads early;
 * - the call settles only when every step has settled: when it rejects, no step is still running, so
 *   the caller may remove the files they use;
 * - it rejects with the error of the step that failed first (not with the abort errors that failure
 *   caused in the others).
 */
export async function together<T extends readonly unknown[]>(
  signal: AbortSignal | undefined,
  steps: { readonly [K in keyof T]: (signal: AbortSignal) => Promise<T[K]> },
): Promise<T> {
  const { controller: ac, dispose } = childController(signal);
  let first: { error: unknown } | null = null;
  try {
    const settled = await Promise.allSettled(
      (steps as ReadonlyArray<(s: AbortSignal) => Promise<unknown>>).map((step) =>
        Promise.resolve()
          .then(() => step(ac.signal))
          .catch((error: unknown) => {
            if (first === null) {
              first = { error };
              ac.abort();
            }
            throw error;
          }),
      ),
    );
    if (first !== null) throw (first as { error: unknown }).error;
    return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
  } finally {
    dispose();
  }
}

/** An AbortController that also aborts when `parent` does; `dispose` detaches it from the parent. */
export function childController(parent: AbortSignal | undefined): {
  controller: AbortController;
  dispose: () => void;
} {
  const controller = new AbortController();
  const onAbort = (): void => controller.abort();
  if (parent?.aborted) controller.abort();
  else parent?.addEventListener('abort', onAbort, { once: true });
  return { controller, dispose: () => parent?.removeEventListener('abort', onAbort) };
}

/**
 * Awaits promises that are already running (short, read-only look-ups) and resolves with their values;
 * when some reject, rejects — once all have settled — with the error of the first in array order, so
 * which error a caller sees does not depend on which look-up happened to be quicker.
 */
export async function allInOrder<T extends readonly unknown[]>(promises: {
  readonly [K in keyof T]: Promise<T[K]>;
}): Promise<T> {
  const settled = await Promise.allSettled(promises as ReadonlyArray<Promise<unknown>>);
  for (const r of settled) if (r.status === 'rejected') throw r.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
