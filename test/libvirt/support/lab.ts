import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';

/**
 * Test support for the libvirt driver's tests: detection of libvirtd / qemu-img (the tests skip, saying
 * why, only when these are absent), temporary qcow2 images, simple test domains and the tiny real guest.
 * Everything is named with the `vpstest-` prefix and removed by `dispose()`. Images live in this
 * checkout's image folder (scripts/paths.sh), never under the checkout or TMPDIR: QEMU runs as
 * `libvirt-qemu`, which cannot traverse a private home directory or a per-user TMPDIR.
 */

export const LIBVIRT_URI = process.env.LIBVIRT_TEST_URI ?? 'qemu:///system';
const execFileP = promisify(execFile);

let availability: { ok: true } | { ok: false; reason: string } | undefined;

/** Synchronous (describe blocks are built synchronously): can this machine run the real-driver tests? */
export function libvirtAvailability(): { ok: true } | { ok: false; reason: string } {
  if (availability) return availability;
  const q = spawnSync('qemu-img', ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (q.error || q.status !== 0) {
    availability = {
      ok: false,
      reason: `qemu-img is not available (${(q.error?.message ?? q.stderr).replace(/\s+/g, ' ').trim()})`,
    };
    return availability;
  }
  // The first connection after libvirtd starts probes capabilities (~8-11 s here).
  const v = spawnSync('virsh', ['-c', LIBVIRT_URI, 'version'], { encoding: 'utf8', timeout: 60_000 });
  if (v.error || v.status !== 0) {
    availability = {
      ok: false,
      reason: `libvirtd is not reachable at ${LIBVIRT_URI} (${(v.error?.message ?? v.stderr).replace(/\s+/g, ' ').trim()}); start it with scripts/services.sh start libvirt`,
    };
    return availability;
  }
  availability = { ok: true };
  return availability;
}

/** `describe` when libvirt and qemu-img are usable, else `describe.skip` with the reason printed. */
export function describeLibvirt(name: string, fn: () => void): void {
  const a = libvirtAvailability();
  if (a.ok) {
    describe(name, fn);
  } else {
    process.stderr.write(`SKIPPED (libvirt tests): ${name}: ${a.reason}\n`);
    describe.skip(`${name} [skipped: ${a.reason}]`, fn);
  }
}

export async function run(cmd: string, args: string[], timeoutMs = 120_000): Promise<string> {
  try {
    const { stdout } = await execFileP(cmd, args, {
      timeout: timeoutMs,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, LC_ALL: 'C' },
    });
    return stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string; code?: unknown };
    throw new Error(`${cmd} ${args.join(' ')} failed (${String(err.code)}): ${err.stderr ?? err.message}`);
  }
}

export async function virsh(...args: string[]): Promise<string> {
  return run('virsh', ['-q', '-c', LIBVIRT_URI, ...args]);
}

/**
 * The UUID of the domain with exactly this name, from the list of all domains (`virsh domuuid 12`
 * would answer for the domain whose id is 12).
 */
export async function domainUuidByName(name: string): Promise<string> {
  const found = (await listDomains()).find((d) => d.name === name);
  if (!found) throw new Error(`no domain named ${name}`);
  return found.uuid;
}

/** The UUID of a lab domain (lab names are never read as ids: `vpstest-…`). */
export async function domainUuid(domain: string): Promise<string> {
  return (await virsh('domuuid', '--domain', domain)).trim();
}

export async function domState(domain: string): Promise<string> {
  return (await virsh('domstate', '--domain', domain)).trim();
}

export async function sha256OfFile(file: string): Promise<string> {
  const h = createHash('sha256');
  const fh = await fsp.open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
    let pos = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (!bytesRead) break;
      h.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

export async function exists(file: string): Promise<boolean> {
  return fsp
    .stat(file)
    .then(() => true)
    .catch(() => false);
}

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

let imagePaths: Promise<{ imagesDir: string; guestDir: string }> | undefined;

/** This checkout's image folder (created, and checked reachable by QEMU's user) and tiny-guest folder. */
export function checkoutImagePaths(): Promise<{ imagesDir: string; guestDir: string }> {
  imagePaths ??= run('bash', [path.join(REPO_ROOT, 'scripts', 'paths.sh'), 'ensure-images']).then((out) => {
    const values = new Map(
      out
        .split('\n')
        .filter((line) => line.includes('='))
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
    const imagesDir = values.get('IMAGES_DIR');
    const guestDir = values.get('GUEST_DIR');
    if (!imagesDir || !guestDir) throw new Error(`scripts/paths.sh printed no IMAGES_DIR/GUEST_DIR:\n${out}`);
    return { imagesDir, guestDir };
  });
  return imagePaths;
}

/** Builds (or reuses) the tiny guest; returns its folder. */
export async function ensureTinyGuest(): Promise<string> {
  const dir = process.env.TINY_GUEST_DIR ?? (await checkoutImagePaths()).guestDir;
  await run('bash', [path.join(REPO_ROOT, 'scripts', 'guest', 'build-tiny-guest.sh'), dir], 300_000);
  return dir;
}

/** Where labs are made: traversable by QEMU's user, one folder per lab below it. */
async function labRoot(): Promise<string> {
  const root = path.join((await checkoutImagePaths()).imagesDir, 'labs');
  await fsp.mkdir(root, { recursive: true, mode: 0o711 });
  return root;
}

export const DEFINE_DOMAIN_SCRIPT = path.join(REPO_ROOT, 'scripts', 'guest', 'define-domain.sh');

let labCount = 0;
const OWNER_FILE = '.vpstest-owner-pid';
/** `<title>` of every lab domain: its owner, for the sweep of domains whose name carries no pid. */
const OWNER_TITLE = 'vpstest-owner-';
let swept: Promise<void> | undefined;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Every domain's UUID and name (names such as `12` are never passed to virsh: it reads them as ids). */
async function listDomains(): Promise<{ uuid: string; name: string }[]> {
  const out = await virsh('list', '--all', '--uuid', '--name').catch(() => '');
  return out
    .split('\n')
    .map((line) => /^(\S+) (.+)$/.exec(line.trim()))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ uuid: m[1], name: m[2] }));
}

/** The test process that made a domain: from its name, or (all-digit names) its `<title>`. */
async function domainOwner(d: { uuid: string; name: string }): Promise<number | null> {
  const m = /^vpstest-[a-z-]+-(\d+)-\d+$/.exec(d.name);
  if (m) return Number(m[1]);
  if (!/^\d+$/.test(d.name)) return null;
  const xml = await virsh('dumpxml', '--domain', d.uuid).catch(() => '');
  const t = new RegExp(`<title>${OWNER_TITLE}(\\d+)</title>`).exec(xml);
  return t ? Number(t[1]) : null;
}

/**
 * Removes what earlier test processes that died without cleaning up (killed runs) left behind: their
 * domains (named `vpstest-<kind>-<pid>-<n>`, or titled with their pid), tmpfs mounts and temporary
 * folders, only when the owning process is gone. Once per process.
 */
function sweepStale(): Promise<void> {
  swept ??= (async () => {
    for (const d of await listDomains()) {
      const owner = await domainOwner(d);
      if (owner === null || owner === process.pid || processAlive(owner)) continue;
      await virsh('destroy', '--domain', d.uuid).catch(() => undefined);
      await virsh('undefine', '--domain', d.uuid, '--checkpoints-metadata').catch(() => undefined);
    }
    const root = await labRoot();
    for (const entry of await fsp.readdir(root).catch(() => [] as string[])) {
      if (!entry.startsWith('vpstest-')) continue;
      const dir = path.join(root, entry);
      const owner = Number(await fsp.readFile(path.join(dir, OWNER_FILE), 'utf8').catch(() => ''));
      if (!owner || owner === process.pid || processAlive(owner)) continue;
      const mounts = (await fsp.readFile('/proc/mounts', 'utf8').catch(() => ''))
        .split('\n')
        .map((l) => l.split(' ')[1])
        .filter((mp) => mp && mp.startsWith(`${dir}/`));
      for (const mp of mounts) await run('umount', [mp]).catch(() => undefined);
      if (mounts.length === 0 || !(await fsp.readFile('/proc/mounts', 'utf8')).includes(`${dir}/`)) {
        await fsp.rm(dir, { recursive: true, force: true }).catch(() => undefined);
      }
    }
  })();
  return swept;
}

/** A temporary folder with disks and domains, all removed by dispose(). */
export class Lab {
  readonly domains: string[] = [];
  private mounts: string[] = [];

  private constructor(readonly dir: string) {}

  static async create(tag: string): Promise<Lab> {
    await sweepStale();
    const dir = await fsp.mkdtemp(path.join(await labRoot(), `vpstest-${tag}-`));
    // qemu runs as libvirt-qemu: it must reach the disks.
    await fsp.chmod(dir, 0o755);
    await fsp.writeFile(path.join(dir, OWNER_FILE), String(process.pid));
    return new Lab(dir);
  }

  uniqueName(kind: string): string {
    return `vpstest-${kind}-${process.pid}-${++labCount}`;
  }

  async mkdir(name: string): Promise<string> {
    const d = path.join(this.dir, name);
    await fsp.mkdir(d, { recursive: true, mode: 0o755 });
    return d;
  }

  /** An empty qcow2 disk of `sizeMiB`. */
  async makeDisk(name: string, sizeMiB: number): Promise<string> {
    const file = path.join(this.dir, name);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', file, `${sizeMiB}M`]);
    return file;
  }

  /**
   * A qcow2 disk holding an empty ext4 file system of `fsMiB` (default: the whole disk); with
   * `tailDataMiB`, that much non-zero data is written after the file system (allocated, but outside it).
   */
  async makeExt4Disk(
    name: string,
    sizeMiB: number,
    opts: { fsMiB?: number; tailDataMiB?: number } = {},
  ): Promise<string> {
    const raw = path.join(this.dir, `${name}.raw`);
    const file = path.join(this.dir, name);
    const fsMiB = opts.fsMiB ?? sizeMiB;
    await run('truncate', ['-s', `${sizeMiB}M`, raw]);
    await run('mkfs.ext4', ['-q', '-F', raw, `${fsMiB}M`]);
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, file]);
    await fsp.rm(raw, { force: true });
    if (opts.tailDataMiB) {
      await run('qemu-io', ['-f', 'qcow2', '-c', `write -q -P 0x5a ${fsMiB}M ${opts.tailDataMiB}M`, file]);
    }
    return file;
  }

  /** Writes `data` at `offset` of the guest-visible content of a qcow2 image (image not in use). */
  async writeDisk(disk: string, offset: number, data: Buffer): Promise<void> {
    const src = path.join(this.dir, `write-${process.pid}-${++labCount}.bin`);
    await fsp.writeFile(src, data);
    try {
      await run('qemu-io', ['-f', 'qcow2', '-c', `write -q -s ${src} ${offset} ${data.length}`, disk]);
    } finally {
      await fsp.rm(src, { force: true });
    }
  }

  /** sha256 of the guest-visible content (`qemu-img convert -O raw`). */
  async guestDigest(disk: string, forceShare = false): Promise<string> {
    const raw = path.join(this.dir, `digest-${process.pid}-${++labCount}.raw`);
    try {
      await run('qemu-img', [
        'convert',
        ...(forceShare ? ['-U'] : []),
        '-f',
        'qcow2',
        '-O',
        'raw',
        disk,
        raw,
      ]);
      return await sha256OfFile(raw);
    } finally {
      await fsp.rm(raw, { force: true });
    }
  }

  /** A domain that boots no OS (SeaBIOS finds nothing to boot): it never writes its disk. */
  async defineSimpleDomain(name: string, disk: string): Promise<void> {
    const xml = `<domain type='qemu'>
  <name>${name}</name>
  <title>${OWNER_TITLE}${process.pid}</title>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='${disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <memballoon model='none'/>
  </devices>
</domain>
`;
    const file = path.join(this.dir, `${name}.xml`);
    await fsp.writeFile(file, xml);
    await virsh('define', file);
    this.domains.push(name);
  }

  /** A tiny-guest domain (see scripts/guest/define-domain.sh). */
  async defineGuestDomain(
    name: string,
    disk: string,
    guestDir: string,
    opts: { agent: boolean; writer?: string; dataDisk?: string },
  ): Promise<string> {
    const serial = path.join(this.dir, `${name}.serial.log`);
    const args = [DEFINE_DOMAIN_SCRIPT, name, disk, guestDir, opts.agent ? '--with-agent' : '--no-agent'];
    args.push('--serial', serial, '--uri', LIBVIRT_URI);
    if (opts.writer) args.push('--writer', opts.writer);
    if (opts.dataDisk) args.push('--data-disk', opts.dataDisk);
    await run('bash', args);
    this.domains.push(name);
    return serial;
  }

  /** Waits until the serial log holds `text`. */
  async waitForSerial(serial: string, text: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const content = await fsp.readFile(serial, 'utf8').catch(() => '');
      if (content.includes(text)) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`serial log ${serial} did not show "${text}" within ${timeoutMs} ms`);
  }

  /** Waits until the guest agent answers a ping. */
  async waitForAgent(domain: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      try {
        await virsh('qemu-agent-command', '--domain', domain, '--timeout', '2', '{"execute":"guest-ping"}');
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 300));
      }
    }
    throw new Error(`guest agent of ${domain} did not answer within ${timeoutMs} ms`);
  }

  /** Mounts a tmpfs of `sizeMiB` (root only) and returns its path; unmounted by dispose(). */
  async mountTmpfs(name: string, sizeMiB: number): Promise<string> {
    const dir = await this.mkdir(name);
    await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0755`, 'vpstest-tmpfs', dir]);
    this.mounts.push(dir);
    return dir;
  }

  /**
   * Kills the domain's qemu with SIGKILL, as a host crash would (no chance to store its bitmaps), and
   * waits until libvirt sees the domain shut off.
   */
  async killQemu(name: string): Promise<void> {
    const pid = Number((await fsp.readFile(`/run/libvirt/qemu/${name}.pid`, 'utf8')).trim());
    if (!Number.isSafeInteger(pid) || pid <= 1) throw new Error(`no qemu pid for ${name}`);
    process.kill(pid, 'SIGKILL');
    const deadline = Date.now() + 30_000;
    while ((await domState(name)) !== 'shut off') {
      if (Date.now() > deadline) throw new Error(`${name} still not shut off after SIGKILL of its qemu`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async destroyDomain(name: string): Promise<void> {
    const uuid = await domainUuidByName(name).catch(() => null);
    if (uuid) await virsh('destroy', '--domain', uuid).catch(() => undefined);
  }

  async dispose(): Promise<void> {
    // By UUID: a lab domain may be named like another domain's id.
    const uuids = new Map((await listDomains()).map((d) => [d.name, d.uuid]));
    for (const d of this.domains.splice(0)) {
      const uuid = uuids.get(d);
      if (!uuid) continue;
      await virsh('destroy', '--domain', uuid).catch(() => undefined);
      await virsh('undefine', '--domain', uuid, '--checkpoints-metadata').catch(() => undefined);
    }
    for (const m of this.mounts.splice(0)) {
      await run('umount', [m]).catch(() => undefined);
    }
    await fsp.rm(this.dir, { recursive: true, force: true });
  }
}
