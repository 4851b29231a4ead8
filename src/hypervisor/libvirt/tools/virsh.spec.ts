import { ProcessRunner, RunOptions, RunResult } from '../process-runner';
import { Virsh } from './virsh';

/** Answers every run with `result`, recording the arguments. */
class Canned extends ProcessRunner {
  readonly calls: Array<readonly string[]> = [];
  constructor(private readonly result: RunResult) {
    super();
  }
  override run(_cmd: string, args: readonly string[], _opts: RunOptions): Promise<RunResult> {
    this.calls.push(args);
    return Promise.resolve(this.result);
  }
}

const UUID = '7c325177-3b30-48fc-9732-6750a55236fe';
const SEP = '@@vps-survey@@';
const DOMINFO = `Id:             -\nName:           web-1\nUUID:           ${UUID}\nState:          shut off\n`;
const XML = `<domain type='qemu'><name>web-1</name><devices><disk type='file' device='disk'>
<driver name='qemu' type='qcow2'/><source file='/images/web-1.qcow2'/><target dev='vda' bus='virtio'/>
</disk></devices></domain>\n`;
const result = (o: Partial<RunResult>): RunResult => ({
  code: 0,
  exitSignal: null,
  stdout: '',
  stderr: '',
  truncated: false,
  ...o,
});

describe('Virsh.survey', () => {
  it('runs dominfo, checkpoint-list and dumpxml as one virsh command list and splits the answers', async () => {
    const runner = new Canned(result({ stdout: `${DOMINFO}${SEP}cp-1\ncp-2\n${SEP}${XML}` }));
    const survey = await new Virsh(runner, 'virsh', 'qemu:///system', 1000).survey(UUID);
    expect(runner.calls).toEqual([
      [
        '-q',
        '-c',
        'qemu:///system',
        `dominfo --domain ${UUID}; echo ${SEP}; checkpoint-list --domain ${UUID} --name; echo ${SEP}; dumpxml --domain ${UUID}`,
      ],
    ]);
    expect(survey).toMatchObject({ name: 'web-1', state: 'shut off', checkpoints: ['cp-1', 'cp-2'] });
    expect(survey?.disks).toEqual([
      expect.objectContaining({ source: '/images/web-1.qcow2', target: 'vda' }),
    ]);
  });

  it('is null when any command failed (virsh goes on after a failure, and exits 0 if the last succeeds)', async () => {
    const failed = [
      result({ stdout: `${SEP}${SEP}${XML}`, stderr: `error: failed to get domain '${UUID}'\n` }),
      result({ code: 1, stdout: `${DOMINFO}${SEP}${SEP}`, stderr: 'error: failed to get domain\n' }),
      result({ stdout: `${DOMINFO}${SEP}${XML}` }),
      result({ stdout: `${DOMINFO}${SEP}${SEP}${XML}`, truncated: true }),
    ];
    for (const r of failed) {
      expect(await new Virsh(new Canned(r), 'virsh', 'qemu:///system', 1000).survey(UUID)).toBeNull();
    }
  });
});
