import { mkdtempSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HypervisorError, ServerRef } from '../hypervisor-driver';
import { LibvirtDriverOptions, LibvirtHypervisorDriver } from './libvirt-hypervisor-driver';
import { ProcessRunner, RunOptions, RunResult } from './process-runner';

const UUID = '4dea22b3-1d52-d8f3-2516-782e98ab3fa0';

const result = (a: Partial<RunResult>): RunResult => ({
  code: 0,
  exitSignal: null,
  stdout: '',
  stderr: '',
  truncated: false,
  ...a,
});

/**
 * Answers virsh calls from a script; records them. No process is started. `dominfo` (how the driver
 * finds the domain by UUID, checks its name and reads its state) is recorded apart in `infos` and
 * answered with `name` and the state the script gives `domstate`.
 */
class FakeVirsh extends ProcessRunner {
  readonly calls: string[] = [];
  readonly infos: string[] = [];
  constructor(
    private readonly answer: (cmd: string, args: string[]) => Partial<RunResult>,
    private readonly name = 'dom-secret',
  ) {
    super();
  }
  override async run(_cmd: string, args: readonly string[], _opts: RunOptions): Promise<RunResult> {
    const rest = args.slice(3); // -q -c URI
    if (rest[0] === 'dominfo') {
      this.infos.push(rest.join(' '));
      const st = result(this.answer('domstate', ['domstate', ...rest.slice(1)]));
      if (st.code !== 0) return st;
      return result({
        stdout: `Id:             -\nName:           ${this.name}\nUUID:           ${rest[2]}\nState:          ${st.stdout.trim()}\n`,
      });
    }
    this.calls.push(rest.join(' '));
    return result(this.answer(rest[0], rest));
  }
}

const disks = mkdtempSync(path.join(os.tmpdir(), 'vps-driver-spec-'));
const server: ServerRef = {
  id: 1,
  domain: 'dom-secret',
  diskPath: path.join(disks, 'dom-secret.qcow2'),
  domainUuid: UUID,
};
const driver = (o: Omit<LibvirtDriverOptions, 'uri' | 'imageRoots'>) =>
  new LibvirtHypervisorDriver({ uri: 'qemu:///system', imageRoots: [disks], ...o });

describe('LibvirtHypervisorDriver power (scripted virsh)', () => {
  it('maps domstate to the two power states', async () => {
    for (const [state, want] of [
      ['running', 'running'],
      ['paused', 'running'],
      ['in shutdown', 'running'],
      ['shut off', 'stopped'],
    ] as const) {
      const d = driver({
        runner: new FakeVirsh(() => ({ stdout: `${state}\n\n` })),
      });
      expect(await d.getPowerState(server)).toBe(want);
    }
  });

  it('domain_not_found with a customer-safe message', async () => {
    const runner = new FakeVirsh(() => ({ code: 1, stderr: "error: failed to get domain 'dom-secret'\n" }));
    const d = driver({ runner });
    const e = (await d.getPowerState(server).catch((x: unknown) => x)) as HypervisorError;
    expect(e).toBeInstanceOf(HypervisorError);
    expect(e.code).toBe('domain_not_found');
    expect(e.message).not.toContain('dom-secret');
    expect(e.detail).toContain('dom-secret');
  });

  it('stop: graceful when the domain goes down within the grace period', async () => {
    let polls = 0;
    const runner = new FakeVirsh((cmd) => {
      if (cmd === 'domstate') return { stdout: polls++ < 3 ? 'running\n' : 'shut off\n' };
      return {};
    });
    const d = driver({ runner, pollIntervalMs: 5 });
    expect(await d.stop(server, { graceSeconds: 5 })).toEqual({ forced: false });
    expect(runner.calls.filter((c) => c.startsWith('destroy'))).toEqual([]);
    expect(runner.calls).toContain(`shutdown --domain ${UUID}`);
  });

  it('stop: forced after the grace period, also when the shutdown request was refused', async () => {
    let destroyed = false;
    const runner = new FakeVirsh((cmd) => {
      if (cmd === 'domstate') return { stdout: destroyed ? 'shut off\n' : 'running\n' };
      if (cmd === 'shutdown') return { code: 1, stderr: 'error: Guest agent is not responding\n' };
      if (cmd === 'destroy') destroyed = true;
      return {};
    });
    const d = driver({ runner, pollIntervalMs: 5 });
    const started = Date.now();
    expect(await d.stop(server, { graceSeconds: 0.2 })).toEqual({ forced: true });
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
  });

  it('stop and start are no-ops in the target state', async () => {
    const off = new FakeVirsh(() => ({ stdout: 'shut off\n' }));
    expect(await driver({ runner: off }).stop(server, { graceSeconds: 1 })).toEqual({
      forced: false,
    });
    expect(off.calls).toEqual([]);
    expect(off.infos).toEqual([`dominfo --domain ${UUID}`]);
    const on = new FakeVirsh(() => ({ stdout: 'running\n' }));
    await driver({ runner: on }).start(server);
    expect(on.calls).toEqual([]);
    expect(on.infos).toEqual([`dominfo --domain ${UUID}`]);
  });

  it('restore refuses anything but shut off before touching files', async () => {
    const runner = new FakeVirsh(() => ({ stdout: 'paused\n' }));
    const d = driver({ runner });
    const e = (await d
      .restoreSnapshot(server, { id: 3, snapshotDir: '/nonexistent/snapshots' }, () => undefined)
      .catch((x: unknown) => x)) as HypervisorError;
    expect(e.code).toBe('invalid_power_state');
    expect(runner.calls).toEqual([]);
    expect(runner.infos).toEqual([`dominfo --domain ${UUID}`]);
  });
});

describe('LibvirtHypervisorDriver addresses domains by UUID (scripted virsh)', () => {
  it('every virsh call of an operation names the UUID, after checking it still has the name', async () => {
    let destroyed = false;
    const runner = new FakeVirsh((cmd) => {
      if (cmd === 'destroy') destroyed = true;
      return cmd === 'domstate' ? { stdout: destroyed ? 'shut off\n' : 'running\n' } : {};
    });
    const d = driver({ runner, pollIntervalMs: 5 });
    expect(await d.getPowerState(server)).toBe('running');
    expect(await d.stop(server, { graceSeconds: 0 })).toEqual({ forced: true });
    expect(runner.infos).toEqual(Array(2).fill(`dominfo --domain ${UUID}`));
    expect(runner.calls.length).toBeGreaterThan(0);
    for (const c of runner.calls) expect(c).toMatch(new RegExp(`^[a-z]+ --domain ${UUID}$`));
  });

  it('a domain renamed or redefined under the name is domain_not_found, and nothing else is asked', async () => {
    const runner = new FakeVirsh(() => ({ stdout: 'shut off\n' }), 'someone-else');
    const d = driver({ runner });
    for (const call of [
      d.getPowerState(server),
      d.start(server),
      d.stop(server, { graceSeconds: 0 }),
      d.restoreSnapshot(server, { id: 3, snapshotDir: '/nonexistent/snapshots' }, () => undefined),
    ]) {
      const e = (await call.catch((x: unknown) => x)) as HypervisorError;
      expect(e).toBeInstanceOf(HypervisorError);
      expect(e.code).toBe('domain_not_found');
      expect(e.retryable).toBe(false);
      expect(e.detail).toContain('someone-else');
    }
    expect(runner.calls).toEqual([]);
    expect(runner.infos).toHaveLength(4);
  });

  it('a ref without a UUID (or with a malformed one) is refused without asking virsh', async () => {
    const runner = new FakeVirsh(() => ({ stdout: 'running\n' }));
    const d = driver({ runner });
    for (const domainUuid of [null, '12', 'dom-secret']) {
      const e = (await d
        .getPowerState({ ...server, domainUuid })
        .catch((x: unknown) => x)) as HypervisorError;
      expect(e.code).toBe('domain_not_found');
    }
    expect([...runner.calls, ...runner.infos]).toEqual([]);
  });

  it('findDomainUuid matches the exact name in the list, an all-digit name included', async () => {
    const list = [
      '11111111-2222-3333-4444-555555555555 web-1',
      '453d97c5-a23d-464d-8703-97e020c1d7f5 12',
      '66666666-7777-8888-9999-aaaaaaaaaaaa 123',
      '',
    ].join('\n');
    const runner = new FakeVirsh((cmd) => (cmd === 'list' ? { stdout: list } : {}));
    const d = driver({ runner });
    expect(await d.findDomainUuid('12')).toBe('453d97c5-a23d-464d-8703-97e020c1d7f5');
    expect(await d.findDomainUuid('web-1')).toBe('11111111-2222-3333-4444-555555555555');
    const e = (await d.findDomainUuid('1').catch((x: unknown) => x)) as HypervisorError;
    expect(e.code).toBe('domain_not_found');
    expect(runner.calls).toEqual(Array(3).fill('list --all --uuid --name'));
  });

  it('refuses connection URIs that run programs, and needs image roots', () => {
    for (const uri of [
      'qemu+ext:///system?command=/bin/true',
      'qemu+ssh://h/system?command=x',
      'test:///x',
    ]) {
      expect(() => new LibvirtHypervisorDriver({ uri, imageRoots: [disks] })).toThrow(/uri must be one of/);
    }
    expect(() => new LibvirtHypervisorDriver({ uri: 'qemu:///system', imageRoots: [] })).toThrow(
      /imageRoots/,
    );
  });

  it('refuses a disk outside its image roots before anything else', async () => {
    const runner = new FakeVirsh(() => ({ stdout: 'shut off\n' }));
    const d = driver({ runner });
    for (const diskPath of ['/etc/shadow', `${disks}/../escape.qcow2`, `${disks}/x.qcow2.restoring`]) {
      const e = (await d
        .createSnapshot({ ...server, diskPath }, { id: 4, snapshotDir: '/nonexistent/s' }, () => undefined)
        .catch((x: unknown) => x)) as HypervisorError;
      expect(e.code).toBe('hypervisor_error');
      expect(e.retryable).toBe(false);
      expect(e.message).not.toContain(diskPath);
    }
    expect([...runner.calls, ...runner.infos]).toEqual([]);
  });
});
