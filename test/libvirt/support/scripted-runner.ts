import { ProcessRunner, RunOptions, RunResult } from '../../../src/hypervisor/libvirt/process-runner';

/**
 * A real ProcessRunner with hooks: a test can replace the result of chosen commands (failure
 * injection) and count how many of a kind run at once.
 */
export type Interceptor = (
  cmd: string,
  args: readonly string[],
  opts: RunOptions,
  real: () => Promise<RunResult>,
) => Promise<RunResult> | undefined;

export class ScriptedRunner extends ProcessRunner {
  readonly calls: Array<{ cmd: string; args: readonly string[] }> = [];
  private interceptors: Interceptor[] = [];
  private active = new Map<string, number>();
  readonly maxActive = new Map<string, number>();

  intercept(i: Interceptor): void {
    this.interceptors.push(i);
  }

  clear(): void {
    this.interceptors = [];
  }

  override async run(cmd: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
    this.calls.push({ cmd, args });
    const key = `${cmd.split('/').pop()} ${subcommand(args)}`;
    this.active.set(key, (this.active.get(key) ?? 0) + 1);
    this.maxActive.set(key, Math.max(this.maxActive.get(key) ?? 0, this.active.get(key)!));
    try {
      const real = (): Promise<RunResult> => super.run(cmd, args, opts);
      for (const i of this.interceptors) {
        const r = i(cmd, args, opts, real);
        if (r) return await r;
      }
      return await real();
    } finally {
      this.active.set(key, this.active.get(key)! - 1);
    }
  }
}

/** The tool's subcommand: first argument that is not an option or an option's value. */
export function subcommand(args: readonly string[]): string {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '-c') {
      i++;
      continue;
    }
    if (!args[i].startsWith('-')) return args[i];
  }
  return '';
}

export function fakeResult(code: number, stdout = '', stderr = ''): RunResult {
  return { code, exitSignal: null, stdout, stderr, truncated: false };
}
