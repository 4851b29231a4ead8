import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

/**
 * sha256 of chunk-sized buffers on a thread of its own, so that the event loop goes on issuing and
 * completing the other chunks' disk requests meanwhile (hashing a 4 MiB chunk holds a thread ~3 ms;
 * a backup hashes every chunk it reads). Only memory that is shared
 * (a SharedArrayBuffer: the page-aligned chunk buffers, common/aligned-buffers.ts) goes to the thread,
 * without a copy; any other buffer is hashed right here, as is everything when the thread failed.
 * The caller must not change the bytes until the promise settles.
 *
 * One thread per process, started on first use, keeping the process alive only while it has work.
 */
const THREAD_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
parentPort.on('message', ({ id, memory, offset, length }) => {
  parentPort.postMessage({ id, hex: createHash('sha256').update(new Uint8Array(memory, offset, length)).digest('hex') });
});`;

/** Buffers smaller than this are hashed in place: the round trip to the thread costs more. */
const MIN_THREAD_BYTES = 256 * 1024;

interface Pending {
  readonly resolve: (hex: string) => void;
  readonly reject: (e: Error) => void;
}

let thread: { readonly worker: Worker; readonly pending: Map<number, Pending> } | null = null;
let nextId = 0;

/** The lower-case hex sha256 of `data`, on this thread. */
export function sha256HexHere(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function hashThread(): NonNullable<typeof thread> {
  if (thread) return thread;
  const worker = new Worker(THREAD_SOURCE, { eval: true });
  worker.unref();
  const pending = new Map<number, Pending>();
  const current = { worker, pending };
  worker.on('message', ({ id, hex }: { id: number; hex: string }) => {
    pending.get(id)?.resolve(hex);
    pending.delete(id);
    if (pending.size === 0) worker.unref();
  });
  // A thread that died takes its requests with it; the next call starts another.
  const fail = (e: Error): void => {
    if (thread === current) thread = null;
    for (const p of pending.values()) p.reject(e);
    pending.clear();
  };
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`sha256 thread exited (${code})`)));
  thread = current;
  return current;
}

/** The lower-case hex sha256 of `data`, on the hash thread when its memory is shared. */
export function sha256Hex(data: Uint8Array): Promise<string> {
  if (!(data.buffer instanceof SharedArrayBuffer) || data.length < MIN_THREAD_BYTES) {
    return Promise.resolve(sha256HexHere(data));
  }
  const { worker, pending } = hashThread();
  const id = nextId++;
  return new Promise<string>((resolve, reject) => {
    // Held while it has work: the process may not end under a hash it awaits.
    if (pending.size === 0) worker.ref();
    pending.set(id, { resolve, reject });
    worker.postMessage({ id, memory: data.buffer, offset: data.byteOffset, length: data.length });
  }).catch(() => sha256HexHere(data));
}
