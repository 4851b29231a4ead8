import { hvError } from '../../driver-errors';
import { classifyToolFailure, isImageInUse, stepError } from '../errors';
import { fileSize } from '../files';
import { jsonInt, parseJsonObject } from '../parsers';
import { ProcessRunner, RunOptions, RunResult } from '../process-runner';

/** What `qemu-img info` says of a qcow2 image, as this driver uses it. */
export interface ImageInfo {
  readonly virtualSize: number;
  readonly actualSize: number;
  readonly clusterSize: number;
  /** No backing file, no external data file, not marked dirty. */
  readonly standalone: boolean;
  /**
   * Standalone, and nothing a convert would leave out or fail on — internal snapshots, persistent
   * bitmaps, encryption — nor marked corrupt. A byte copy of a plain image is the same disk as a
   * convert of it.
   */
  readonly plain: boolean;
}

/** A persistent dirty bitmap of a qcow2 image, as `qemu-img info` lists it. */
export interface ImageBitmap {
  readonly name: string;
  /** `auto` (recording) without `in-use` (left open by a qemu that never closed the image). */
  readonly consistent: boolean;
}

/** One entry of `qemu-img map --output=json`. */
export interface MapEntry {
  readonly start: number;
  readonly length: number;
  readonly depth: number;
  /** Allocated at this depth (data, or clusters written as zero). */
  readonly present: boolean;
  readonly zero: boolean;
  readonly data: boolean;
  /** Where the data lies in the image file (absent for holes and compressed clusters). */
  readonly offset: number | null;
}

/** What `verify` found of a good image. */
export interface ImageCheck {
  readonly fileBytes: number;
  readonly standalone: boolean;
  readonly compressedClusters: number;
  /** `qemu-img check` found leaked clusters (exit 3): harmless, allowed only when asked. */
  readonly leaks: boolean;
}

/** Escapes a value for qemu's `--image-opts` key=value,key=value syntax. */
function imageOptValue(v: string): string {
  return v.replace(/,/g, ',,');
}

/**
 * `qemu-img`, always on qcow2, `LC_ALL=C`. Short calls (info, measure) have the command deadline;
 * long ones (check, convert) the copy deadline of the image's virtual size.
 */
export class QemuImg {
  constructor(
    private readonly runner: ProcessRunner,
    readonly path: string,
    private readonly timeoutMs: number,
    private readonly copyTimeoutMs: (virtualBytes: number) => number,
  ) {}

  /** Runs qemu-img with the command deadline; an exit code is the caller's to read. */
  async raw(args: string[], signal?: AbortSignal): Promise<RunResult> {
    try {
      return await this.runner.run(this.path, args, {
        timeoutMs: this.timeoutMs,
        signal,
        env: { LC_ALL: 'C' },
      });
    } catch (e) {
      throw stepError(e, 'hypervisor_error', 'qemu-img');
    }
  }

  /** Runs qemu-img, failing (classified, else `fallback`) unless it exits 0. */
  async run(
    args: string[],
    fallback: 'hypervisor_error' | 'copy_failed',
    signal?: AbortSignal,
  ): Promise<RunResult> {
    const r = await this.raw(args, signal);
    if (r.code !== 0) throw classifyToolFailure(this.path, args, r, fallback);
    return r;
  }

  /** A long run (a copy or a check of `virtualSize` bytes): the copy deadline; exit code not read. */
  async long(
    args: string[],
    virtualSize: number,
    o: Pick<RunOptions, 'signal' | 'onStdout'>,
    fallback: 'hypervisor_error' | 'copy_failed',
  ): Promise<RunResult> {
    try {
      return await this.runner.run(this.path, args, {
        timeoutMs: this.copyTimeoutMs(virtualSize),
        signal: o.signal,
        onStdout: o.onStdout,
        env: { LC_ALL: 'C' },
      });
    } catch (e) {
      throw stepError(e, fallback, `qemu-img ${args[0]}`);
    }
  }

  /** `qemu-img info`; `forceShare` (-U) reads a disk a running domain holds. */
  async info(file: string, forceShare: boolean): Promise<ImageInfo> {
    const args = ['info', ...(forceShare ? ['-U'] : []), '-f', 'qcow2', '--output=json', file];
    const r = await this.run(args, 'hypervisor_error');
    const o = parseJsonObject(r.stdout);
    const virtualSize = jsonInt(o, 'virtual-size');
    const actualSize = jsonInt(o, 'actual-size');
    if (virtualSize === null || actualSize === null) {
      throw hvError(
        'hypervisor_error',
        `unexpected qemu-img info output for ${file}: ${r.stdout.slice(0, 500)}`,
      );
    }
    const asRecord = (v: unknown): Record<string, unknown> =>
      v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
    const none = (v: unknown): boolean => v === undefined || (Array.isArray(v) && v.length === 0);
    const qcow2 = asRecord(asRecord(o?.['format-specific']).data);
    const standalone =
      o?.['backing-filename'] === undefined &&
      o?.['full-backing-filename'] === undefined &&
      qcow2['data-file'] === undefined &&
      o?.['dirty-flag'] !== true;
    const plain =
      standalone &&
      none(o?.snapshots) &&
      none(qcow2.bitmaps) &&
      qcow2.encrypt === undefined &&
      qcow2.corrupt !== true &&
      o?.['encrypted'] !== true;
    return { virtualSize, actualSize, clusterSize: jsonInt(o, 'cluster-size') ?? 65536, standalone, plain };
  }

  /** The image's persistent bitmaps (`qemu-img info` without -U: fails while a qemu uses it). */
  async bitmaps(file: string): Promise<ImageBitmap[]> {
    const r = await this.run(['info', '-f', 'qcow2', '--output=json', file], 'hypervisor_error');
    const data = (parseJsonObject(r.stdout)?.['format-specific'] as { data?: { bitmaps?: unknown } })?.data;
    const list = Array.isArray(data?.bitmaps) ? (data.bitmaps as Array<Record<string, unknown>>) : [];
    return list.map((b) => {
      const flags = Array.isArray(b.flags) ? (b.flags as unknown[]) : [];
      return { name: String(b.name), consistent: flags.includes('auto') && !flags.includes('in-use') };
    });
  }

  /** `qemu-img bitmap --add|--remove` on a disk no qemu uses. */
  async bitmap(op: 'add' | 'remove', file: string, name: string): Promise<void> {
    await this.run(['bitmap', `--${op}`, '-f', 'qcow2', file, name], 'hypervisor_error');
  }

  /**
   * `qemu-img map --output=json` of `source` (a file name, or a `json:` / `--image-opts` spec when
   * `imageOpts`). Its cost is the image's metadata, read once.
   */
  async map(source: string, o: { imageOpts?: boolean; signal?: AbortSignal } = {}): Promise<MapEntry[]> {
    // A `json:` spec names its own driver; a plain file is a qcow2.
    const how = o.imageOpts ? ['--image-opts'] : source.startsWith('json:') ? [] : ['-f', 'qcow2'];
    const args = ['map', '--output=json', ...how, source];
    const r = await this.run(args, 'hypervisor_error', o.signal);
    let parsed: unknown;
    try {
      parsed = JSON.parse(r.stdout);
    } catch {
      parsed = null;
    }
    if (!Array.isArray(parsed)) {
      throw hvError('hypervisor_error', `unexpected qemu-img map output: ${r.stdout.slice(0, 500)}`);
    }
    return (parsed as Array<Record<string, unknown>>).map((e) => ({
      start: Number(e.start),
      length: Number(e.length),
      depth: Number(e.depth ?? 0),
      present: e.present === undefined ? e.data === true || e.zero === true : e.present === true,
      zero: e.zero === true,
      data: e.data === true,
      offset: typeof e.offset === 'number' ? e.offset : null,
    }));
  }

  /** Bytes a qcow2 copy of `source` needs (`qemu-img measure`), readable while a domain runs it. */
  async measure(source: string, signal?: AbortSignal): Promise<number> {
    const args = [
      'measure',
      '--output=json',
      '-O',
      'qcow2',
      '--image-opts',
      `driver=qcow2,file.driver=file,file.filename=${imageOptValue(source)},force-share=on`,
    ];
    const r = await this.run(args, 'hypervisor_error', signal);
    const required = jsonInt(parseJsonObject(r.stdout), 'required');
    if (required === null)
      throw hvError('hypervisor_error', `unexpected qemu-img measure output: ${r.stdout.slice(0, 500)}`);
    return required;
  }

  /**
   * `qemu-img check` plus the checks it does not make: the image must end within the file (a
   * truncated file), and have the expected virtual size. `failCode` is the code for a bad image.
   */
  async verify(
    file: string,
    virtualSize: number,
    signal: AbortSignal | undefined,
    failCode: 'verification_failed' | 'copy_failed',
    allowLeaks = false,
  ): Promise<ImageCheck> {
    const args = ['check', '-f', 'qcow2', '--output=json', file];
    const r = await this.long(args, virtualSize, { signal }, 'hypervisor_error');
    const ok = r.code === 0 || (allowLeaks && r.code === 3);
    if (!ok) {
      if (isImageInUse(r.stderr)) throw classifyToolFailure(this.path, args, r, failCode);
      throw hvError(
        failCode,
        `qemu-img check exit ${r.code}: ${r.stdout.slice(0, 2000)} ${r.stderr.slice(-2000)}`,
      );
    }
    const report = parseJsonObject(r.stdout);
    const end = jsonInt(report, 'image-end-offset');
    const compressedClusters = jsonInt(report, 'compressed-clusters') ?? 0;
    const bytes = await fileSize(file);
    if (bytes === null) throw hvError(failCode, `${file} disappeared`);
    const info = await this.info(file, false);
    // The image must end within the file. With compressed clusters the reported end is rounded up to
    // a whole cluster while the last compressed cluster may stop short of it; so with leaked clusters,
    // where the last (leaked) cluster can be a short metadata table (measured: an internal snapshot's
    // table left behind ended 65,469 bytes before the reported end).
    const slack = compressedClusters > 0 || r.code === 3 ? info.clusterSize : 0;
    if (end === null || end > bytes + slack) {
      throw hvError(failCode, `image end offset ${end} beyond file size ${bytes} (truncated?) for ${file}`);
    }
    if (info.virtualSize !== virtualSize) {
      throw hvError(failCode, `virtual size ${info.virtualSize} != expected ${virtualSize} for ${file}`);
    }
    return { fileBytes: bytes, standalone: info.standalone, compressedClusters, leaks: r.code === 3 };
  }

  /** qemu-img opening the disk without -U takes its lock: `invalid_power_state` while any qemu uses it. */
  async requireNotInUse(disk: string): Promise<void> {
    const r = await this.raw(['info', '-f', 'qcow2', '--output=json', disk]);
    if (r.code === 0) return;
    if (isImageInUse(r.stderr)) {
      throw hvError(
        'invalid_power_state',
        `disk in use: ${r.stderr.trim()}`,
        'hypervisor_server_must_be_stopped',
      );
    }
    // A disk that cannot be opened at all (missing, damaged) is replaced by the restore anyway.
  }
}
