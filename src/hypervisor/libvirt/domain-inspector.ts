import { hvError } from '../driver-errors';
import { classifyToolFailure, stepError } from './errors';
import { ProcessRunner } from './process-runner';

/**
 * Reads a libvirt domain's disks from `virsh dumpxml`, without an XML library. libvirt writes this
 * XML itself (well-formed, attribute values quoted with ' or ", special characters as entities), so a
 * small careful scanner suffices: elements are matched by exact name, nested <backingStore> and
 * <mirror> blocks (which hold <source> elements of their own) are cut out before reading a disk's
 * own <source>, and entities in attribute values are decoded.
 */

export interface DomainDisk {
  /** `type` attribute of <disk>: file, block, network, volume, ... */
  readonly type: string;
  /** `device` attribute: disk, cdrom, floppy, lun. */
  readonly device: string;
  /** <source file=…> (type file) or <source dev=…> (type block); null when absent (e.g. empty cdrom). */
  readonly source: string | null;
  /** <driver type=…>: qcow2, raw, ...; null when absent. */
  readonly format: string | null;
  /** <target dev=…>: vda, sda, ...; null when absent. */
  readonly target: string | null;
}

export interface InspectorOptions {
  readonly virshPath?: string;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

export function decodeXmlEntities(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);/g, (whole, ent: string) => {
    if (ent.startsWith('#x')) return String.fromCodePoint(parseInt(ent.slice(2), 16));
    if (ent.startsWith('#')) return String.fromCodePoint(parseInt(ent.slice(1), 10));
    return ENTITIES[ent] ?? whole;
  });
}

export function escapeXmlAttr(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** Attributes of a start tag's inside (after the element name). */
export function parseAttributes(tagBody: string): Record<string, string> {
  const attrs: Record<string, string> = {};
  const re = /([A-Za-z_:][-A-Za-z0-9_:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;
  for (let m = re.exec(tagBody); m !== null; m = re.exec(tagBody)) {
    attrs[m[1]] = decodeXmlEntities(m[2] ?? m[3] ?? '');
  }
  return attrs;
}

function stripComments(xml: string): string {
  return xml.replace(/<!--[\s\S]*?-->/g, '');
}

/** Removes every `<name …>…</name>` and `<name …/>` block (nesting of the same name included). */
function stripElements(xml: string, name: string): string {
  let out = xml;
  const open = new RegExp(`<${name}(?=[\\s/>])`);
  for (let guard = 0; guard < 1000; guard++) {
    const m = open.exec(out);
    if (!m) break;
    const start = m.index;
    const end = findElementEnd(out, start, name);
    out = out.slice(0, start) + out.slice(end);
  }
  return out;
}

/** Index just past the end of the element starting at `start` (handles self-closing and nesting). */
function findElementEnd(xml: string, start: number, name: string): number {
  const tagEnd = xml.indexOf('>', start);
  if (tagEnd < 0) return xml.length;
  if (xml[tagEnd - 1] === '/') return tagEnd + 1;
  const re = new RegExp(`<(/?)${name}(?=[\\s/>])[^>]*?(/?)>`, 'g');
  re.lastIndex = tagEnd + 1;
  let depth = 1;
  for (let m = re.exec(xml); m !== null; m = re.exec(xml)) {
    if (m[1] === '/') depth--;
    else if (m[2] !== '/') depth++;
    if (depth === 0) return m.index + m[0].length;
  }
  return xml.length;
}

/** First start tag `<name …>` in `xml`, as its attributes; null when absent. */
function firstTag(xml: string, name: string): Record<string, string> | null {
  const m = new RegExp(`<${name}(?=[\\s/>])([^>]*)>`).exec(xml);
  return m ? parseAttributes(m[1]) : null;
}

/** Every <disk> of the domain's <devices>, in document order. */
export function parseDomainDisks(xml: string): DomainDisk[] {
  const clean = stripComments(xml);
  const disks: DomainDisk[] = [];
  const re = /<disk(?=[\s/>])([^>]*)>/g;
  for (let m = re.exec(clean); m !== null; m = re.exec(clean)) {
    const attrs = parseAttributes(m[1].replace(/\/$/, ''));
    const end = findElementEnd(clean, m.index, 'disk');
    const inner = stripElements(
      stripElements(clean.slice(m.index + m[0].length, end), 'backingStore'),
      'mirror',
    );
    re.lastIndex = end;
    const source = firstTag(inner, 'source');
    const driver = firstTag(inner, 'driver');
    const target = firstTag(inner, 'target');
    disks.push({
      type: attrs.type ?? 'file',
      device: attrs.device ?? 'disk',
      source: source ? (source.file ?? source.dev ?? null) : null,
      format: driver?.type ?? null,
      target: target?.dev ?? null,
    });
  }
  return disks;
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
