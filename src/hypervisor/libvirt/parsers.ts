/** Parsers for the text output of qemu-img and virsh (virsh has no JSON output). */

/** Last `(12.34/100%)` in a chunk of `qemu-img convert -p` stdout; null when there is none. */
export function parseQemuImgProgress(chunk: string): number | null {
  const re = /\((\d+(?:\.\d+)?)\/100%\)/g;
  let last: number | null = null;
  for (let m = re.exec(chunk); m !== null; m = re.exec(chunk)) last = Number(m[1]);
  return last;
}

/**
 * Keeps a tail of the stream between chunks: a progress token may be split across two chunks.
 */
export class QemuImgProgressParser {
  private carry = '';

  constructor(private readonly onPct: (pct: number) => void) {}

  push(chunk: string): void {
    const text = this.carry + chunk;
    const pct = parseQemuImgProgress(text);
    if (pct !== null) this.onPct(pct);
    const lastOpen = text.lastIndexOf('(');
    this.carry = lastOpen >= 0 && !text.slice(lastOpen).includes(')') ? text.slice(lastOpen) : '';
  }
}

/** `virsh domstate` prints e.g. `shut off` (with `--reason`: `shut off (shutdown)`). */
export function parseDomState(stdout: string): string {
  const first = stdout
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l.length > 0);
  return (first ?? '').replace(/\s*\(.*\)$/, '').toLowerCase();
}

/**
 * `virsh dominfo` (LC_ALL=C): the domain's name, and its state as `virsh domstate` words it (lower
 * case, no reason); empty strings when a line is missing.
 */
export function parseDomInfo(stdout: string): { name: string; state: string } {
  const field = (key: string) => {
    const line = stdout.split('\n').find((l) => l.startsWith(`${key}:`));
    return line === undefined ? '' : line.slice(key.length + 1).trim();
  };
  return { name: field('Name'), state: parseDomState(field('State')) };
}

/** libvirt's virDomainJobType. */
export const JOB_TYPE = { none: 0, bounded: 1, unbounded: 2, completed: 3, failed: 4, cancelled: 5 } as const;
/** libvirt's virDomainJobOperation value for a backup job. */
export const JOB_OPERATION_BACKUP = 9;

export interface DomJobInfo {
  readonly type: number;
  readonly fields: Readonly<Record<string, string>>;
}

/**
 * `virsh domjobinfo --rawstats` output:
 * ```
 * Job type: 2
 *
 * operation: 9
 * disk_total: 268435456
 * disk_processed: 236978176
 * ```
 */
export function parseDomJobInfoRaw(stdout: string): DomJobInfo {
  const fields: Record<string, string> = {};
  let type = -1;
  for (const raw of stdout.split('\n')) {
    const line = raw.trim();
    const idx = line.indexOf(':');
    if (idx <= 0) continue;
    const key = line.slice(0, idx).trim();
    const value = line.slice(idx + 1).trim();
    if (key.toLowerCase() === 'job type') {
      const n = Number(value);
      type = Number.isInteger(n) ? n : -1;
    } else {
      fields[key] = value;
    }
  }
  return { type, fields };
}

/** Percentage of a running job from its raw stats, or null when it cannot be told. */
export function jobProgress(info: DomJobInfo): number | null {
  const num = (k: string): number | null => {
    const v = info.fields[k];
    if (v === undefined) return null;
    const n = Number(v);
    return Number.isFinite(n) ? n : null;
  };
  for (const prefix of ['disk', 'data']) {
    const total = num(`${prefix}_total`);
    const processed = num(`${prefix}_processed`);
    if (total !== null && processed !== null && total > 0) {
      return Math.min(100, Math.max(0, (processed / total) * 100));
    }
    const remaining = num(`${prefix}_remaining`);
    if (total !== null && remaining !== null && total > 0) {
      return Math.min(100, Math.max(0, ((total - remaining) / total) * 100));
    }
  }
  return null;
}

/** A finite, non-negative integer field of a JSON object, or null. */
export function jsonInt(obj: unknown, key: string): number | null {
  if (obj === null || typeof obj !== 'object') return null;
  const v = (obj as Record<string, unknown>)[key];
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : null;
}

export function parseJsonObject(text: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** `virsh list --all --uuid --name` -> [uuid (as printed), name] per domain; null at a line of another shape. */
export function parseUuidNameList(stdout: string): { pairs: [string, string][]; bad: string | null } {
  const pairs: [string, string][] = [];
  for (const line of stdout.split('\n')) {
    if (line.trim() === '') continue;
    const m = /^([0-9a-fA-F-]{36}) (.+)$/.exec(line.trim());
    if (!m) return { pairs, bad: line };
    pairs.push([m[1], m[2]]);
  }
  return { pairs, bad: null };
}

/**
 * `virsh domstats --state` -> each domain's name with its virDomainState and reason numbers. A name is
 * printed between quotes and may itself hold quotes: it runs to the line's last one.
 */
export function parseDomStatsStates(stdout: string): Map<string, { state: number; reason: number }> {
  const out = new Map<string, { state: number; reason: number }>();
  let current: { state: number; reason: number } | null = null;
  for (const line of stdout.split('\n')) {
    const domain = /^Domain: '(.*)'\s*$/.exec(line);
    if (domain) {
      current = { state: -1, reason: -1 };
      out.set(domain[1], current);
      continue;
    }
    const field = /^\s+state\.(state|reason)=(\d+)\s*$/.exec(line);
    if (field && current) current[field[1] as 'state' | 'reason'] = Number(field[2]);
  }
  return out;
}
