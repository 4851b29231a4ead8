import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { hvError, sleep } from '../../driver-errors';
import { DiskExtent } from '../../hypervisor-driver';
import { classifyToolFailure, stepError } from '../errors';
import { ProcessRunner, RunResult } from '../process-runner';
import { childController } from '../together';
import { QemuImg } from './qemu-img';

/** How long qemu-nbd may take to open the disk and serve it. */
const SERVE_TIMEOUT_MS = 15_000;

/** A shut-off disk served read-only by one qemu-nbd for a backup read session (see QemuNbd.serve). */
export interface DiskExport {
  /** The ranges the served bitmap marks dirty, in order. */
  dirtyExtents(signal?: AbortSignal): Promise<DiskExtent[]>;
  /** Stops qemu-nbd: the image lock goes with it. */
  release(): Promise<void>;
}

type Ended = { r: RunResult } | { e: unknown };

/**
 * `qemu-nbd` (under `setpriv --pdeathsig KILL`): a shut-off disk opened read-only for a whole backup
 * read. It does two things at once: it holds qemu's image lock (a qcow2 opened read-only shares
 * reading only, so no writer — the domain included — can open the disk), and it exports the base
 * checkpoint's bitmap (`-B`), which `qemu-img map` reads over NBD with `x-dirty-bitmap` (qemu-img has
 * no command that prints a bitmap; clean ranges read as data, dirty ones as holes).
 */
export class QemuNbd {
  constructor(
    private readonly runner: ProcessRunner,
    readonly path: string,
    private readonly setprivPath: string,
    private readonly qemuImg: QemuImg,
  ) {}

  /**
   * Serves `disk` read-only, with bitmap `bitmap` when given, until `release()` (or `timeoutMs`).
   * Resolves once qemu-nbd has the disk open, i.e. holds its lock: qemu-nbd writes its pid file only
   * after it opened the image and set up the export (its listening socket comes earlier). It is killed
   * the moment this process dies (`setpriv --pdeathsig KILL`: the kernel does it, so a crashed worker
   * never leaves a disk locked). A disk some qemu has open for writing is `invalid_power_state`.
   */
  async serve(
    disk: string,
    bitmap: string | null,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<DiskExport> {
    // -t: the export outlives each client (the maps); -e 4: they may connect while another is on.
    const nbdArgs = ['-r', '-f', 'qcow2', ...(bitmap === null ? [] : ['-B', bitmap]), '-t', '-e', '4'];
    const { socket, release } = await this.start(nbdArgs, disk, timeoutMs, signal);
    const spec = `driver=nbd,server.type=unix,server.path=${socket}`;
    return {
      dirtyExtents: async (s?: AbortSignal) => {
        if (bitmap === null) throw hvError('hypervisor_error', 'no bitmap served');
        const entries = await this.qemuImg.map(`${spec},x-dirty-bitmap=qemu:dirty-bitmap:${bitmap}`, {
          imageOpts: true,
          signal: s,
        });
        return entries.filter((e) => !e.data).map((e) => ({ offset: e.start, length: e.length }));
      },
      release,
    };
  }

  /**
   * Starts qemu-nbd on `image` with `nbdArgs` and a socket and pid file of its own; resolves once it
   * serves (its pid file is there). `release` kills it (if still running), waits, and removes both.
   */
  private async start(
    nbdArgs: readonly string[],
    image: string,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<{ socket: string; release: () => Promise<void> }> {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vps-nbd-'));
    const socket = path.join(dir, 'nbd.sock');
    const pidFile = path.join(dir, 'nbd.pid');
    const argsSeen = [...nbdArgs, '-k', socket, '--pid-file', pidFile, image];
    const args = ['--pdeathsig', 'KILL', '--', this.path, ...argsSeen];
    // The export outlives the caller's signal (it ends with release); only the wait for it uses it.
    const { controller } = childController(undefined);
    const ended: Promise<Ended> = this.runner
      .run(this.setprivPath, args, { timeoutMs, signal: controller.signal, env: { LC_ALL: 'C' } })
      .then(
        (r) => ({ r }),
        (e: unknown) => ({ e }),
      );
    const state: { ended: Ended | null } = { ended: null };
    void ended.then((x) => (state.ended = x));
    const release = async (): Promise<void> => {
      if (state.ended === null) controller.abort();
      await ended;
      await fsp.rm(dir, { recursive: true, force: true }).catch(() => undefined);
    };
    try {
      const deadline = Date.now() + SERVE_TIMEOUT_MS;
      while (
        !(await fsp.stat(pidFile).then(
          () => true,
          () => false,
        ))
      ) {
        if (state.ended !== null) {
          const x = state.ended;
          if ('e' in x) throw stepError(x.e, 'hypervisor_error', 'qemu-nbd');
          throw classifyToolFailure(this.path, argsSeen, x.r, 'hypervisor_error');
        }
        if (Date.now() > deadline)
          throw hvError('timeout', `qemu-nbd did not serve within ${SERVE_TIMEOUT_MS} ms`);
        await sleep(10, signal);
      }
    } catch (e) {
      await release();
      throw e;
    }
    return { socket, release };
  }
}
