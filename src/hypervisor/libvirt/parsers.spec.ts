import { HypervisorError } from '../hypervisor-driver';
import { parseDomainDisks, pushBackupXml } from './domain-xml';
import { classifyToolFailure, stepError } from './errors';
import { virshErrorText } from './tools/virsh';
import {
  parseDomInfo,
  jobProgress,
  parseDomJobInfoRaw,
  parseDomState,
  parseDomStatsStates,
  parseQemuImgProgress,
  parseUuidNameList,
  QemuImgProgressParser,
} from './parsers';
import { ProcessRunError } from './process-runner';
import { Semaphore } from '../../common/semaphore';
import { parseManifest, serializeManifest, SnapshotManifest } from './snapshot-manifest';

describe('qemu-img progress', () => {
  it('reads the last (x/100%) of a chunk', () => {
    expect(parseQemuImgProgress('    (0.00/100%)\r    (1.01/100%)\r    (12.34/100%)\r')).toBe(12.34);
    expect(parseQemuImgProgress('no progress here')).toBeNull();
    expect(parseQemuImgProgress('(100.00/100%)\n')).toBe(100);
  });

  it('joins a token split across chunks', () => {
    const seen: number[] = [];
    const p = new QemuImgProgressParser((v) => seen.push(v));
    p.push('    (3.00/100%)\r    (4');
    p.push('5.50/100%)\r');
    expect(seen).toEqual([3, 45.5]);
  });
});

describe('virsh output', () => {
  it('domstate', () => {
    expect(parseDomState('shut off\n\n')).toBe('shut off');
    expect(parseDomState('running\n')).toBe('running');
    expect(parseDomState('shut off (destroyed)\n')).toBe('shut off');
    expect(parseDomState('')).toBe('');
  });

  it('list --uuid --name and domstats --state (names with spaces and quotes)', () => {
    const list = parseUuidNameList(
      "c39fb995-7b46-4f65-a024-a4f9da7190ec web 1\nEBB4419C-2B2E-4ECF-B68B-1EE5CE0F285D it's\n\n",
    );
    expect(list).toEqual({
      pairs: [
        ['c39fb995-7b46-4f65-a024-a4f9da7190ec', 'web 1'],
        ['EBB4419C-2B2E-4ECF-B68B-1EE5CE0F285D', "it's"],
      ],
      bad: null,
    });
    expect(parseUuidNameList('c39fb995 web\n').bad).toBe('c39fb995 web');
    const stats = parseDomStatsStates(
      "Domain: 'web 1'\n  state.state=1\n  state.reason=1\n\nDomain: 'it's'\n  state.state=5\n  state.reason=3\n",
    );
    expect([...stats]).toEqual([
      ['web 1', { state: 1, reason: 1 }],
      ["it's", { state: 5, reason: 3 }],
    ]);
  });

  it('domjobinfo --rawstats, running and completed', () => {
    const running = parseDomJobInfoRaw(
      'Job type: 2\n\noperation: 9\ntime_elapsed: 140\ndisk_total: 268435456\ndisk_processed: 67108864\ndisk_remaining: 201326592\n',
    );
    expect(running.type).toBe(2);
    expect(running.fields.operation).toBe('9');
    expect(jobProgress(running)).toBe(25);
    expect(parseDomJobInfoRaw('Job type: 0\n\n').type).toBe(0);
    const done = parseDomJobInfoRaw('Job type: 3\n\noperation: 9\ndisk_total: 100\ndisk_remaining: 0\n');
    expect(jobProgress(done)).toBe(100);
    expect(jobProgress(parseDomJobInfoRaw('Job type: 2\n'))).toBeNull();
  });

  it('error lines', () => {
    expect(virshErrorText("error: failed to get domain 'x'\nerror: Domain not found\n")).toBe(
      "failed to get domain 'x' | Domain not found",
    );
    expect(virshErrorText('something else\n')).toBe('something else');
  });
});

describe('error classification', () => {
  const fail = (
    stderr: string,
    fallback: 'copy_failed' | 'hypervisor_error' = 'hypervisor_error',
  ): HypervisorError =>
    classifyToolFailure('virsh', ['domstate', '--domain', 'secret-domain'], { code: 1, stderr }, fallback);

  it('maps tool messages to codes and keeps the tool output in detail only', () => {
    const e = fail("error: failed to get domain 'secret-domain'\n");
    expect(e.code).toBe('domain_not_found');
    expect(e.message).not.toContain('secret-domain');
    expect(e.detail).toContain('secret-domain');
    expect(
      fail('qemu-img: error while writing at byte 123: No space left on device', 'copy_failed').code,
    ).toBe('insufficient_storage');
    expect(fail('Failed to get shared "write" lock\nIs another process using the image [x]?').code).toBe(
      'invalid_power_state',
    );
    expect(fail('error: Timed out during operation: cannot acquire state change lock').retryable).toBe(true);
    expect(fail('qemu-img: Could not open x', 'copy_failed').code).toBe('copy_failed');
    expect(fail('weird').code).toBe('hypervisor_error');
  });

  it('maps process and fs failures', () => {
    expect(stepError(new ProcessRunError('aborted', 'x', 'm'), 'copy_failed').code).toBe('cancelled');
    expect(stepError(new ProcessRunError('timeout', 'x', 'm'), 'copy_failed').code).toBe('timeout');
    const enospc = Object.assign(new Error('ENOSPC: no space left'), { code: 'ENOSPC' });
    expect(stepError(enospc, 'copy_failed').code).toBe('insufficient_storage');
    expect(stepError(new Error('boom'), 'copy_failed').code).toBe('copy_failed');
  });
});

describe('domain XML', () => {
  const xml = `<domain type='qemu' id='3'>
  <name>demo</name>
  <!-- <disk type='file' device='disk'><source file='/commented/out.qcow2'/></disk> -->
  <devices>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <disk type="file" device="disk">
      <driver name="qemu" type="qcow2" discard="unmap"/>
      <source file="/var/lib/vps/a &amp; b&apos;s disk.qcow2" index="2"/>
      <backingStore type='file' index='3'>
        <format type='raw'/>
        <source file='/var/lib/vps/base.img'/>
        <backingStore/>
      </backingStore>
      <target dev="vda" bus="virtio"/>
      <alias name="virtio-disk0"/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/vg/data'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <diskette/>
  </devices>
</domain>`;

  it('lists disks with their own source, skipping backing stores and comments', () => {
    expect(parseDomainDisks(xml)).toEqual([
      { type: 'file', device: 'cdrom', source: null, format: 'raw', target: 'sda' },
      {
        type: 'file',
        device: 'disk',
        source: "/var/lib/vps/a & b's disk.qcow2",
        format: 'qcow2',
        target: 'vda',
      },
      { type: 'block', device: 'disk', source: '/dev/vg/data', format: 'raw', target: 'vdb' },
    ]);
  });

  it("decodes numeric character references and ignores a mirror's source", () => {
    const mirrored = `<domain><devices><disk type='file' device='disk'>
      <mirror type='file' job='copy'><source file='/elsewhere/copy.qcow2'/></mirror>
      <source file='/var/lib/vps/&#65;&#x42;.qcow2'/><target dev='vda'/></disk></devices></domain>`;
    expect(parseDomainDisks(mirrored)).toEqual([
      { type: 'file', device: 'disk', source: '/var/lib/vps/AB.qcow2', format: null, target: 'vda' },
    ]);
    expect(parseDomainDisks('<domain><devices/></domain>')).toEqual([]);
  });

  it('writes the push backup XML with its attribute values escaped', () => {
    const xml = pushBackupXml(['vda', 'sda'], 'vda', `/x/a&b<c>"d"'e'.qcow2`);
    expect(xml).toContain(`<domainbackup mode="push">`);
    expect(xml).toContain(`<target file="/x/a&amp;b&lt;c&gt;&quot;d&quot;&apos;e&apos;.qcow2"/>`);
    expect(xml).toContain(`<driver type="qcow2"/>`);
    expect(xml).toContain(`<disk name="sda" backup="no"/>`);
  });
});

describe('Semaphore', () => {
  it('grants up to capacity and queues the rest in order', async () => {
    const s = new Semaphore(2);
    const r1 = await s.acquire();
    const r2 = await s.acquire();
    const order: number[] = [];
    const p3 = s.acquire().then((r) => {
      order.push(3);
      return r;
    });
    const p4 = s.acquire().then((r) => {
      order.push(4);
      return r;
    });
    expect(s.waiting).toBe(2);
    r1();
    r1(); // a second call is ignored
    const r3 = await p3;
    expect(order).toEqual([3]);
    r2();
    (await p4)();
    r3();
    expect(s.inUse).toBe(0);
  });

  it('a waiter can give up through its signal', async () => {
    const s = new Semaphore(1);
    const r1 = await s.acquire();
    const ac = new AbortController();
    const p = s.acquire(ac.signal);
    ac.abort();
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    expect(s.waiting).toBe(0);
    r1();
    expect(s.inUse).toBe(0);
  });
});

describe('snapshot manifest', () => {
  const m: SnapshotManifest = {
    kind: 'vps-snapshot-manifest',
    version: 1,
    snapshotId: 7,
    file: '7.qcow2',
    bytes: 1234,
    sha256: 'a'.repeat(64),
    imageFormat: 'qcow2',
    compression: 'none',
    virtualSize: 65536,
    consistency: 'quiesced',
    createdAt: '2026-01-01T00:00:00.000Z',
  };

  it('round-trips and rejects anything malformed', () => {
    expect(parseManifest(serializeManifest(m))).toEqual(m);
    expect(parseManifest('{')).toBeNull();
    expect(parseManifest(JSON.stringify({ ...m, bytes: -1 }))).toBeNull();
    expect(parseManifest(JSON.stringify({ ...m, sha256: 'xyz' }))).toBeNull();
    expect(parseManifest(JSON.stringify({ ...m, version: 2 }))).toBeNull();
  });
});

describe('parseDomInfo', () => {
  it('reads the name and the state as domstate words it', () => {
    const out = [
      'Id:             3',
      'Name:           12',
      'UUID:           453d97c5-a23d-464d-8703-97e020c1d7f5',
      'OS Type:        hvm',
      'State:          shut off',
      'CPU(s):         1',
      '',
    ].join('\n');
    expect(parseDomInfo(out)).toEqual({ name: '12', state: 'shut off' });
    expect(parseDomInfo('Name: web-1\nState: running\n')).toEqual({ name: 'web-1', state: 'running' });
    expect(parseDomInfo('garbage')).toEqual({ name: '', state: '' });
  });
});
