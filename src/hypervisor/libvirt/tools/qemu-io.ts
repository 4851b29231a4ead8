import { PassThrough } from 'node:stream';

import { HypervisorErrorCode } from '../../hypervisor-driver';
import { classifyToolFailure, stepError } from '../errors';
import { ProcessRunner } from '../process-runner';
import { childController } from '../together';

/** A held image lock: `stillHeld()` asks qemu-io again, `release()` ends it. */
export interface ImageLock {
  stillHeld(): Promise<boolean>;
  release(): Promise<void>;
}

/**
 * `qemu-io` (under `stdbuf -oL`), used for one thing: holding a shut-off disk's image lock while
 * something else reads the disk.
 */
export class QemuIo {
  constructor(
    private readonly runner: ProcessRunner,
    readonly path: string,
    private readonly stdbufPath: string,
  ) {}

  /**
   * Opens `disk` read-only in `qemu-io` and keeps it open — holding qemu's image lock, which shuts
   * out every writer — until `release()` (or `timeoutMs`). qemu-io reads its commands from a pipe
   * this process keeps open, so it also exits (and the lock goes) the moment this process dies: a
   * crashed worker never leaves a disk locked. Resolves once the lock is held: qemu-io answers a
   * `length` command only while it has the image open with its locks (`stdbuf -oL` so the answer is
   * not held back in a buffer). `stillHeld()` asks again: true on an answer, false when qemu-io has
   * ended instead — a holder killed a moment ago is not mistaken for a live one. A disk that a qemu
   * process has open for writing is `invalid_power_state`; another failure to open it is `failCode`.
   */
  async holdImageLock(
    disk: string,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    failCode: HypervisorErrorCode,
  ): Promise<ImageLock> {
    const qemuIoArgs = ['-r', '-f', 'qcow2', disk];
    const args = ['-oL', this.path, ...qemuIoArgs];
    const { controller, dispose } = childController(signal);
    const commands = new PassThrough();
    let answers = 0; // qemu-io's prompt has no newline: each line is the answer to one `length`
    let waiting: Array<{ answers: number; resolve: () => void }> = [];
    const ended = this.runner
      .run(this.stdbufPath, args, {
        timeoutMs,
        signal: controller.signal,
        stdin: commands,
        onStdout: (chunk) => {
          answers += chunk.split('\n').length - 1;
          for (const w of waiting.filter((x) => answers >= x.answers)) w.resolve();
          waiting = waiting.filter((x) => answers < x.answers);
        },
        env: { LC_ALL: 'C' },
      })
      .then(
        (r) => ({ r }),
        (e: unknown) => ({ e }),
      )
      .finally(dispose);
    const ask = (): Promise<boolean> => {
      const answered = new Promise<boolean>((resolve) =>
        waiting.push({ answers: answers + 1, resolve: () => resolve(true) }),
      );
      commands.write('length\n');
      return Promise.race([answered, ended.then(() => false)]);
    };
    const release = async (): Promise<void> => {
      controller.abort();
      await ended;
      commands.end();
    };
    if (!(await ask())) {
      const first = await ended;
      commands.end();
      if ('e' in first) throw stepError(first.e, 'hypervisor_error', 'qemu-io (image lock)');
      throw classifyToolFailure(this.path, qemuIoArgs, first.r, failCode);
    }
    return { stillHeld: ask, release };
  }
}
