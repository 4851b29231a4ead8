import { FileHasher } from '../files';
import { ProcessRunner } from '../process-runner';
import { QemuImg } from './qemu-img';
import { QemuIo } from './qemu-io';
import { Virsh } from './virsh';

const MIB = 1024 * 1024;

/** The tools the driver runs, and their deadlines (see LibvirtDriverOptions for each). */
export interface ToolboxOptions {
  readonly uri: string;
  readonly runner?: ProcessRunner;
  /** sha256 of snapshot files (their manifests). Tests substitute a subclass. */
  readonly hasher?: FileHasher;
  readonly virshPath?: string;
  readonly qemuImgPath?: string;
  /** GNU coreutils `cp`: the byte copy of a plain disk (create) or a plain snapshot (restore). */
  readonly cpPath?: string;
  /** `qemu-io` (qemu-utils): holds a shut-off disk's image lock while `cp` copies it or a backup reads it. */
  readonly qemuIoPath?: string;
  /** GNU coreutils `stdbuf`: makes qemu-io say at once that it holds the lock. */
  readonly stdbufPath?: string;
  /** Deadline of every short virsh / qemu-img call (state, info, measure, freeze, ...). Default 60 s. */
  readonly commandTimeoutMs?: number;
  /** A disk copy or check fails with `timeout` when slower than this (bytes/s of virtual size). Default 16 MiB/s. */
  readonly copyMinBytesPerSecond?: number;
  /** ...but is never given less than this. Default 10 min. */
  readonly copyTimeoutFloorMs?: number;
  /** Interval between `virsh domjobinfo` / `domstate` polls. Default 250 ms. */
  readonly pollIntervalMs?: number;
  /**
   * How long a frozen guest's thaw is retried while its agent does not answer. Default 2 min: a
   * busy guest's agent can miss libvirt's 5 s sync many times over, and a freeze whose virsh call
   * timed out still holds the agent until the guest answers it.
   */
  readonly thawDeadlineMs?: number;
}

/** Everything the copy strategies and the driver use to reach the host: one per driver. */
export class Toolbox {
  readonly runner: ProcessRunner;
  readonly hasher: FileHasher;
  readonly virsh: Virsh;
  readonly qemuImg: QemuImg;
  readonly qemuIo: QemuIo;
  /** GNU coreutils `cp`: the byte copy. */
  readonly cpPath: string;
  readonly commandTimeoutMs: number;
  readonly pollIntervalMs: number;
  readonly thawDeadlineMs: number;
  private readonly copyMinBytesPerSecond: number;
  private readonly copyTimeoutFloorMs: number;

  constructor(o: ToolboxOptions) {
    this.runner = o.runner ?? new ProcessRunner();
    this.hasher = o.hasher ?? new FileHasher();
    this.commandTimeoutMs = o.commandTimeoutMs ?? 60_000;
    this.pollIntervalMs = o.pollIntervalMs ?? 250;
    this.thawDeadlineMs = o.thawDeadlineMs ?? 120_000;
    this.copyMinBytesPerSecond = o.copyMinBytesPerSecond ?? 16 * MIB;
    this.copyTimeoutFloorMs = o.copyTimeoutFloorMs ?? 10 * 60_000;
    this.cpPath = o.cpPath ?? 'cp';
    this.virsh = new Virsh(this.runner, o.virshPath ?? 'virsh', o.uri, this.commandTimeoutMs);
    this.qemuImg = new QemuImg(this.runner, o.qemuImgPath ?? 'qemu-img', this.commandTimeoutMs, (v) =>
      this.copyTimeoutMs(v),
    );
    this.qemuIo = new QemuIo(this.runner, o.qemuIoPath ?? 'qemu-io', o.stdbufPath ?? 'stdbuf');
  }

  /** The deadline of a copy or check of `virtualBytes`: the minimum rate, never below the floor. */
  copyTimeoutMs(virtualBytes: number): number {
    return Math.max(this.copyTimeoutFloorMs, Math.ceil((virtualBytes / this.copyMinBytesPerSecond) * 1000));
  }
}
