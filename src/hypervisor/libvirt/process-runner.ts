import { Injectable } from '@nestjs/common';
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';

/**
 * Runs one external program (never through a shell) with a deadline, optional cancellation and
 * bounded capture of its output. The libvirt driver runs every `virsh` / `qemu-img` call through it;
 * tests substitute a subclass to inject failures.
 */

export const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024;
/** Time between SIGTERM and SIGKILL when a child has to be stopped. */
export const DEFAULT_KILL_GRACE_MS = 2000;

export interface RunOptions {
  /** Hard deadline for the whole run; the child is killed when it passes. */
  readonly timeoutMs: number;
  /** Aborting kills the child. */
  readonly signal?: AbortSignal;
  /** Per stream: only the last `maxOutputBytes` bytes of stdout and of stderr are kept. */
  readonly maxOutputBytes?: number;
  /** Receives every stdout chunk as it arrives (e.g. to parse progress), independent of the cap. */
  readonly onStdout?: (chunk: string) => void;
  /** Time between SIGTERM and SIGKILL when the child must be stopped. */
  readonly killGraceMs?: number;
  /** Extra environment (merged over the current one). */
  readonly env?: NodeJS.ProcessEnv;
  /**
   * The child's standard input: a text written to it, or a stream piped into it (what the caller
   * writes later arrives too). Either way it stays open until the child ends (or the stream ends):
   * the child reads end-of-input only when it is stopped or when this process dies (e.g. a qemu-io
   * reading its commands). Without it the child's stdin is at its end from the start.
   */
  readonly stdin?: string | Readable;
}

export interface RunResult {
  /** Exit code, or null when the child was ended by a signal. */
  readonly code: number | null;
  /** Signal that ended the child, if any. */
  readonly exitSignal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** True when output beyond the cap was dropped (the head of the stream was discarded). */
  readonly truncated: boolean;
}

export type ProcessFailureKind = 'timeout' | 'aborted' | 'spawn_failed';

/** The run did not complete normally: it timed out, was aborted, or the program could not start. */
export class ProcessRunError extends Error {
  constructor(
    readonly kind: ProcessFailureKind,
    readonly command: string,
    message: string,
    /** Output captured up to the moment the child was stopped (tail only). */
    readonly stdout = '',
    readonly stderr = '',
  ) {
    super(message);
    this.name = 'ProcessRunError';
  }
}

export function isProcessRunError(e: unknown): e is ProcessRunError {
  return e instanceof ProcessRunError;
}

/** Keeps the last `cap` bytes of a byte stream. */
class TailBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  dropped = false;

  constructor(private readonly cap: number) {}

  push(chunk: Buffer): void {
    if (this.cap <= 0) {
      this.dropped = this.dropped || chunk.length > 0;
      return;
    }
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.cap && this.chunks.length > 0) {
      const excess = this.size - this.cap;
      const first = this.chunks[0];
      this.dropped = true;
      if (first.length <= excess) {
        this.chunks.shift();
        this.size -= first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.size -= excess;
      }
    }
  }

  toString(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

@Injectable()
export class ProcessRunner {
  run(cmd: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
    const cap = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
    const killGraceMs = opts.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
    const display = [cmd, ...args].join(' ');

    return new Promise<RunResult>((resolve, reject) => {
      if (opts.signal?.aborted) {
        reject(new ProcessRunError('aborted', display, 'aborted before start'));
        return;
      }
      const out = new TailBuffer(cap);
      const err = new TailBuffer(cap);
      let settled = false;
      let stopReason: ProcessFailureKind | null = null;
      let killTimer: NodeJS.Timeout | undefined;

      const child = spawn(cmd, [...args], {
        stdio: ['pipe', 'pipe', 'pipe'],
        shell: false,
        env: opts.env ? { ...process.env, ...opts.env } : process.env,
      });

      const stopChild = (reason: ProcessFailureKind): void => {
        if (stopReason !== null) return;
        stopReason = reason;
        try {
          child.kill('SIGTERM');
        } catch {
          /* already gone */
        }
        killTimer = setTimeout(() => {
          try {
            child.kill('SIGKILL');
          } catch {
            /* already gone */
          }
        }, killGraceMs);
        killTimer.unref();
      };

      const timer = setTimeout(() => stopChild('timeout'), Math.max(0, opts.timeoutMs));
      timer.unref();
      const onAbort = (): void => stopChild('aborted');
      opts.signal?.addEventListener('abort', onAbort, { once: true });

      const cleanup = (): void => {
        child.stdin.destroy();
        clearTimeout(timer);
        if (killTimer) clearTimeout(killTimer);
        opts.signal?.removeEventListener('abort', onAbort);
      };

      child.stdout.on('data', (chunk: Buffer) => {
        out.push(chunk);
        if (opts.onStdout) {
          try {
            opts.onStdout(chunk.toString('utf8'));
          } catch {
            /* a faulty listener must not break the run */
          }
        }
      });
      child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
      child.stdin.on('error', () => undefined); // EPIPE when the child exits first
      if (opts.stdin === undefined)
        child.stdin.end(); // end of input at once, as /dev/null
      else if (typeof opts.stdin === 'string') child.stdin.write(opts.stdin);
      else opts.stdin.pipe(child.stdin);

      child.on('error', (e: NodeJS.ErrnoException) => {
        // spawn failure (ENOENT, EACCES); 'close' may not follow.
        if (settled) return;
        settled = true;
        cleanup();
        reject(new ProcessRunError('spawn_failed', display, `cannot run ${cmd}: ${e.code ?? e.message}`));
      });

      child.on('close', (code, exitSignal) => {
        if (settled) return;
        settled = true;
        cleanup();
        if (stopReason === 'timeout') {
          reject(
            new ProcessRunError(
              'timeout',
              display,
              `${cmd} did not finish within ${opts.timeoutMs} ms`,
              out.toString(),
              err.toString(),
            ),
          );
          return;
        }
        if (stopReason === 'aborted') {
          reject(
            new ProcessRunError('aborted', display, `${cmd} was aborted`, out.toString(), err.toString()),
          );
          return;
        }
        resolve({
          code,
          exitSignal,
          stdout: out.toString(),
          stderr: err.toString(),
          truncated: out.dropped || err.dropped,
        });
      });
    });
  }
}
