import { HypervisorError } from '../hypervisor-driver';
import { LibvirtHypervisorDriver } from './libvirt-hypervisor-driver';
import { ProcessRunner, RunOptions, RunResult } from './process-runner';

/** Answers virsh calls from a script; records them. No process is started. */
class FakeVirsh extends ProcessRunner {
  readonly calls: string[] = [];
  constructor(private readonly answer: (cmd: string, args: string[]) => Partial<RunResult>) {
    super();
  }
  override async run(_cmd: string, args: readonly string[], _opts: RunOptions): Promise<RunResult> {
    const rest = args.slice(3); // -q -c URI
    this.calls.push(rest.join(' '));
    const a = this.answer(rest[0], rest);
    return { code: 0, exitSignal: null, stdout: '', stderr: '', truncated: false, ...a };
  }
}

const server = { id: 1, domain: 'dom-secret', diskPath: '/srv/disks/dom-secret.qcow2' };

describe('LibvirtHypervisorDriver power (scripted virsh)', () => {
  it('maps domstate to the two power states', async () => {
    for (const [state, want] of [
      ['running', 'running'],
      ['paused', 'running'],
      ['in shutdown', 'running'],
      ['shut off', 'stopped'],
    ] as const) {
      const d = new LibvirtHypervisorDriver({
        uri: 'test:///x',
        runner: new FakeVirsh(() => ({ stdout: `${state}\n\n` })),
      });
      expect(await d.getPowerState(server)).toBe(want);
    }
  });

  it('domain_not_found with a customer-safe message', async () => {
    const runner = new FakeVirsh(() => ({ code: 1, stderr: "error: failed to get domain 'dom-secret'\n" }));
    const d = new LibvirtHypervisorDriver({ uri: 'test:///x', runner });
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
    const d = new LibvirtHypervisorDriver({ uri: 'test:///x', runner, pollIntervalMs: 5 });
    expect(await d.stop(server, { graceSeconds: 5 })).toEqual({ forced: false });
    expect(runner.calls.filter((c) => c.startsWith('destroy'))).toEqual([]);
    expect(runner.calls).toContain('shutdown --domain dom-secret');
  });

  it('stop: forced after the grace period, also when the shutdown request was refused', async () => {
    let destroyed = false;
    const runner = new FakeVirsh((cmd) => {
      if (cmd === 'domstate') return { stdout: destroyed ? 'shut off\n' : 'running\n' };
      if (cmd === 'shutdown') return { code: 1, stderr: 'error: Guest agent is not responding\n' };
      if (cmd === 'destroy') destroyed = true;
      return {};
    });
    const d = new LibvirtHypervisorDriver({ uri: 'test:///x', runner, pollIntervalMs: 5 });
    const started = Date.now();
    expect(await d.stop(server, { graceSeconds: 0.2 })).toEqual({ forced: true });
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
  });

  it('stop and start are no-ops in the target state', async () => {
    const off = new FakeVirsh(() => ({ stdout: 'shut off\n' }));
    expect(
      await new LibvirtHypervisorDriver({ uri: 'test:///x', runner: off }).stop(server, { graceSeconds: 1 }),
    ).toEqual({
      forced: false,
    });
    expect(off.calls).toEqual(['domstate --domain dom-secret']);
    const on = new FakeVirsh(() => ({ stdout: 'running\n' }));
    await new LibvirtHypervisorDriver({ uri: 'test:///x', runner: on }).start(server);
    expect(on.calls).toEqual(['domstate --domain dom-secret']);
  });

  it('restore refuses anything but shut off before touching files', async () => {
    const runner = new FakeVirsh(() => ({ stdout: 'paused\n' }));
    const d = new LibvirtHypervisorDriver({ uri: 'test:///x', runner });
    const e = (await d
      .restoreSnapshot(server, { id: 3, snapshotDir: '/nonexistent/snapshots' }, () => undefined)
      .catch((x: unknown) => x)) as HypervisorError;
    expect(e.code).toBe('invalid_power_state');
    expect(runner.calls).toEqual(['domstate --domain dom-secret']);
  });
});
