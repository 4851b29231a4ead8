import { hvError } from '../../driver-errors';
import { HypervisorError } from '../../hypervisor-driver';
import { readDomainDisks } from '../domain-inspector';
import { DomainDisk, parseDomainDisks } from '../domain-xml';
import { classifyToolFailure, stepError } from '../errors';
import { parseDomInfo, parseDomState } from '../parsers';
import { ProcessRunner, RunResult } from '../process-runner';

/** The `error: …` lines virsh prints on stderr (exit 1), or the whole stderr when there are none. */
export function virshErrorText(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('error:'))
    .map((l) => l.slice('error:'.length).trim());
  return lines.length > 0 ? lines.join(' | ') : stderr.trim();
}

/** Printed by virsh between the commands of a {@link Virsh.survey}; in none of their outputs. */
const SURVEY_SEPARATOR = '@@vps-survey@@';

/** What a backup read asks of a domain before anything else (see {@link Virsh.survey}). */
export interface DomainSurvey {
  readonly name: string;
  readonly state: string;
  /** libvirt's checkpoint records. */
  readonly checkpoints: string[];
  readonly disks: DomainDisk[];
}

/**
 * `virsh -q -c <uri> …`: every call with a deadline, `LC_ALL=C` (the classification reads English),
 * failures classified by `classifyToolFailure` from virsh's own `error:` lines.
 */
export class Virsh {
  constructor(
    private readonly runner: ProcessRunner,
    readonly path: string,
    readonly uri: string,
    private readonly timeoutMs: number,
  ) {}

  /** Runs virsh; a run that could not finish is a HypervisorError, an exit code the caller's to read. */
  async raw(args: string[], o: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<RunResult> {
    const full = ['-q', '-c', this.uri, ...args];
    try {
      return await this.runner.run(this.path, full, {
        timeoutMs: o.timeoutMs ?? this.timeoutMs,
        signal: o.signal,
        env: { LC_ALL: 'C' },
      });
    } catch (e) {
      throw stepError(e, 'hypervisor_error', `virsh ${args[0]}`);
    }
  }

  /** Runs virsh, failing (classified) unless it exits 0. */
  async run(args: string[]): Promise<RunResult> {
    const r = await this.raw(args);
    if (r.code !== 0) throw this.failure(args, r);
    return r;
  }

  failure(
    args: string[],
    r: RunResult,
    fallback: 'hypervisor_error' | 'copy_failed' = 'hypervisor_error',
  ): HypervisorError {
    return classifyToolFailure(this.path, args, { code: r.code, stderr: virshErrorText(r.stderr) }, fallback);
  }

  /** `virsh dominfo`: the domain's name and state (a `uuid` names it: never read as an id). */
  async domInfo(uuid: string): Promise<{ name: string; state: string }> {
    return parseDomInfo((await this.run(['dominfo', '--domain', uuid])).stdout);
  }

  async domState(domain: string): Promise<string> {
    const state = parseDomState((await this.run(['domstate', '--domain', domain])).stdout);
    if (!state) throw hvError('hypervisor_error', `empty virsh domstate output for ${domain}`);
    return state;
  }

  /** The domain's disks, from its XML (`virsh dumpxml`). */
  async disks(uuid: string, signal?: AbortSignal): Promise<DomainDisk[]> {
    return readDomainDisks(this.runner, this.uri, uuid, {
      virshPath: this.path,
      timeoutMs: this.timeoutMs,
      signal,
    }).catch((e: unknown) => {
      throw stepError(e, 'hypervisor_error', 'dumpxml');
    });
  }

  /**
   * `dominfo`, `checkpoint-list` and `dumpxml` of the domain in ONE virsh process (virsh runs a
   * `;`-separated command list itself; no shell): one connection to libvirtd instead of three, which on
   * a busy host is most of each call's cost. `uuid` must be canonical (it is spliced into the command
   * text). Null when any command failed: virsh then goes on with the next and does not say which failed,
   * so the caller asks again one command at a time and gets each failure classified as usual.
   */
  async survey(uuid: string, signal?: AbortSignal): Promise<DomainSurvey | null> {
    const sep = `echo ${SURVEY_SEPARATOR}`;
    const list = [
      `dominfo --domain ${uuid}`,
      sep,
      `checkpoint-list --domain ${uuid} --name`,
      sep,
      `dumpxml --domain ${uuid}`,
    ].join('; ');
    let r: RunResult;
    try {
      r = await this.runner.run(this.path, ['-q', '-c', this.uri, list], {
        timeoutMs: this.timeoutMs,
        signal,
        maxOutputBytes: 4 * 1024 * 1024,
        env: { LC_ALL: 'C' },
      });
    } catch (e) {
      throw stepError(e, 'hypervisor_error', 'virsh dominfo; checkpoint-list; dumpxml');
    }
    const parts = r.stdout.split(SURVEY_SEPARATOR);
    if (r.code !== 0 || r.truncated || /^error:/m.test(r.stderr) || parts.length !== 3) return null;
    const { name, state } = parseDomInfo(parts[0]);
    const checkpoints = parts[1]
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '');
    return { name, state, checkpoints, disks: parseDomainDisks(parts[2]) };
  }

  /** The names of the domain's checkpoints (libvirt's records). */
  async checkpointNames(uuid: string): Promise<string[]> {
    const r = await this.run(['checkpoint-list', '--domain', uuid, '--name']);
    return r.stdout
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '');
  }

  /**
   * libvirt's estimate of the bytes an incremental backup from checkpoint `name` of a running domain
   * would copy (`checkpoint-dumpxml --size`, summed over its disks), or null when it gives none (the
   * checkpoint or its bitmap is gone, the domain is not running).
   */
  async checkpointSizeBytes(uuid: string, name: string): Promise<number | null> {
    const r = await this.raw([
      'checkpoint-dumpxml',
      '--domain',
      uuid,
      '--checkpointname',
      name,
      '--no-domain',
      '--size',
    ]);
    if (r.code !== 0) return null;
    const sizes = [...r.stdout.matchAll(/<disk\b[^>]*\bsize=['"](\d+)['"]/g)].map((m) => Number(m[1]));
    return sizes.length ? sizes.reduce((a, b) => a + b, 0) : null;
  }

  /**
   * Records in libvirt a checkpoint whose bitmap `qemu-img bitmap --add` made on the shut-off disk
   * `target` (`checkpoint-create --redefine`): what lets a later live backup start from it.
   */
  async redefineCheckpoint(uuid: string, xmlFile: string): Promise<void> {
    await this.run(['checkpoint-create', '--domain', uuid, '--xmlfile', xmlFile, '--redefine']);
  }

  /**
   * Deletes a checkpoint: with its bitmap (a running domain), or libvirt's record only (`metadata`).
   * A checkpoint that is not there is success.
   */
  async deleteCheckpoint(uuid: string, name: string, metadata: boolean): Promise<void> {
    const args = ['checkpoint-delete', '--domain', uuid, '--checkpointname', name];
    if (metadata) args.push('--metadata');
    const r = await this.raw(args);
    if (r.code !== 0 && !/checkpoint not found|no domain checkpoint with matching name/i.test(r.stderr)) {
      throw this.failure(args, r);
    }
  }
}
