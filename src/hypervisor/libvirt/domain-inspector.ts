import { hvError } from '../driver-errors';
import { classifyToolFailure, stepError } from './errors';
import { DomainDisk, parseDomainDisks } from './domain-xml';
import { ProcessRunner } from './process-runner';

/**
 * Reads a libvirt domain's disks: `virsh dumpxml`, parsed by domain-xml.ts.
 */

export interface InspectorOptions {
  readonly virshPath?: string;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/**
 * The domain's XML. `uuid` names the domain by its UUID: virsh would read a name such as `12` as a
 * domain id (see domain-identity.ts).
 */
export async function dumpDomainXml(
  runner: ProcessRunner,
  uri: string,
  uuid: string,
  opts: InspectorOptions = {},
): Promise<string> {
  const cmd = opts.virshPath ?? 'virsh';
  const args = ['-q', '-c', uri, 'dumpxml', '--domain', uuid];
  let r;
  try {
    r = await runner.run(cmd, args, {
      timeoutMs: opts.timeoutMs ?? 60_000,
      signal: opts.signal,
      maxOutputBytes: 4 * 1024 * 1024,
      env: { LC_ALL: 'C' },
    });
  } catch (e) {
    throw stepError(e, 'hypervisor_error', 'virsh dumpxml');
  }
  if (r.code !== 0) throw classifyToolFailure(cmd, args, r, 'hypervisor_error');
  if (r.truncated) throw hvError('hypervisor_error', `virsh dumpxml output exceeded 4 MiB for ${uuid}`);
  return r.stdout;
}

export async function readDomainDisks(
  runner: ProcessRunner,
  uri: string,
  uuid: string,
  opts: InspectorOptions = {},
): Promise<DomainDisk[]> {
  return parseDomainDisks(await dumpDomainXml(runner, uri, uuid, opts));
}

/**
 * The domain's first file-backed disk device (`<disk type='file' device='disk'>`): its image path
 * and format, the domain named by its UUID. Used by `server import` to register an existing domain.
 * Errors: `domain_not_found`; `hypervisor_error` when the domain has no such disk.
 */
export async function readDomainDisk(
  runner: ProcessRunner,
  uri: string,
  uuid: string,
  opts: InspectorOptions = {},
): Promise<{ diskPath: string; format: string }> {
  const disks = await readDomainDisks(runner, uri, uuid, opts);
  const disk = disks.find((d) => d.type === 'file' && d.device === 'disk' && d.source);
  if (!disk || !disk.source) {
    throw hvError(
      'hypervisor_error',
      `domain ${uuid} has no file-backed disk`,
      'hypervisor_no_file_backed_disk',
    );
  }
  return { diskPath: disk.source, format: disk.format ?? 'raw' };
}
