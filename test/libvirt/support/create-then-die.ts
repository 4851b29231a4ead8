/**
 * A worker that dies mid-copy: starts a snapshot create of a shut-off disk with the real libvirt
 * driver, and when the byte copy is about to start prints `copying` and never lets it finish — the
 * test then SIGKILLs this process. Run with `node -r ts-node/register/transpile-only`.
 * Arguments: uri domain domainUuid diskPath snapshotDir
 */
import * as path from 'node:path';
import { LibvirtHypervisorDriver } from '../../../src/hypervisor/libvirt/libvirt-hypervisor-driver';
import { ProcessRunner, RunOptions, RunResult } from '../../../src/hypervisor/libvirt/process-runner';

class StallingCopy extends ProcessRunner {
  override run(cmd: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
    if (cmd === 'cp') {
      process.stdout.write('copying\n');
      return new Promise<RunResult>(() => undefined);
    }
    return super.run(cmd, args, opts);
  }
}

const [uri, domain, domainUuid, diskPath, snapshotDir] = process.argv.slice(2);
void new LibvirtHypervisorDriver({
  uri,
  imageRoots: [path.dirname(diskPath)],
  runner: new StallingCopy(),
}).createSnapshot({ id: 1, domain, domainUuid, diskPath }, { id: 1, snapshotDir }, () => undefined);
