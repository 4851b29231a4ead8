import { PassThrough } from 'node:stream';

import { ProcessRunError, ProcessRunner } from './process-runner';

const node = process.execPath;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('ProcessRunner', () => {
  const runner = new ProcessRunner();

  it('captures exit code, stdout and stderr', async () => {
    const r = await runner.run(
      node,
      ['-e', 'process.stdout.write("out"); process.stderr.write("err"); process.exit(3)'],
      { timeoutMs: 10_000 },
    );
    expect(r).toMatchObject({ code: 3, exitSignal: null, stdout: 'out', stderr: 'err', truncated: false });
  });

  it('passes arguments verbatim, without a shell', async () => {
    const tricky = ['$(echo no)', 'a b', "'q'", ';ls', '*'];
    const r = await runner.run(
      node,
      ['-e', 'console.log(JSON.stringify(process.argv.slice(1)))', ...tricky],
      {
        timeoutMs: 10_000,
      },
    );
    expect(JSON.parse(r.stdout)).toEqual(tricky);
  });

  it('keeps only the tail of a large output', async () => {
    const r = await runner.run(
      node,
      [
        '-e',
        'for (let i = 0; i < 5000; i++) process.stderr.write(String(i).padStart(6, "0") + "\\n"); process.stdout.write("x".repeat(300000) + "END")',
      ],
      { timeoutMs: 10_000, maxOutputBytes: 1024 },
    );
    expect(r.code).toBe(0);
    expect(r.truncated).toBe(true);
    expect(Buffer.byteLength(r.stdout)).toBe(1024);
    expect(r.stdout.endsWith('END')).toBe(true);
    expect(Buffer.byteLength(r.stderr)).toBe(1024);
    expect(r.stderr.endsWith('004999\n')).toBe(true);
  });

  it('streams stdout chunks to onStdout', async () => {
    const seen: string[] = [];
    await runner.run(
      node,
      ['-e', 'process.stdout.write("    (1.00/100%)\\r"); process.stdout.write("(50.00/100%)\\r")'],
      {
        timeoutMs: 10_000,
        onStdout: (c) => seen.push(c),
      },
    );
    expect(seen.join('')).toContain('(50.00/100%)');
  });

  it('kills the child on timeout and rejects with a typed error', async () => {
    let pid = 0;
    const started = Date.now();
    const e = await runner
      .run(node, ['-e', 'console.log(process.pid); setInterval(() => {}, 1000)'], {
        timeoutMs: 3000,
        onStdout: (c) => (pid = Number(c.trim())),
      })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ProcessRunError);
    expect((e as ProcessRunError).kind).toBe('timeout');
    expect(pid).toBeGreaterThan(0);
    expect(alive(pid)).toBe(false);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('escalates to SIGKILL when SIGTERM is ignored', async () => {
    let pid = 0;
    const started = Date.now();
    const e = await runner
      .run(
        node,
        ['-e', 'process.on("SIGTERM", () => {}); console.log(process.pid); setInterval(() => {}, 1000)'],
        {
          timeoutMs: 3000,
          killGraceMs: 500,
          onStdout: (c) => (pid = Number(c.trim())),
        },
      )
      .catch((x: unknown) => x);
    expect((e as ProcessRunError).kind).toBe('timeout');
    expect(pid).toBeGreaterThan(0);
    expect(alive(pid)).toBe(false);
    // SIGTERM was ignored: the run only ended after the grace period, with SIGKILL.
    expect(Date.now() - started).toBeGreaterThanOrEqual(3000 + 500 - 50);
  });

  it('kills the child when the signal aborts', async () => {
    const ac = new AbortController();
    let pid = 0;
    const p = runner.run(node, ['-e', 'console.log(process.pid); setInterval(() => {}, 1000)'], {
      timeoutMs: 30_000,
      signal: ac.signal,
      onStdout: (c) => {
        pid = Number(c.trim());
        ac.abort();
      },
    });
    const e = await p.catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ProcessRunError);
    expect((e as ProcessRunError).kind).toBe('aborted');
    expect(pid).toBeGreaterThan(0);
    expect(alive(pid)).toBe(false);
  });

  // The child echoes what it reads, and says `eof` when its input ends.
  const echo =
    'process.stdin.on("data", (d) => process.stdout.write(d)); process.stdin.on("end", () => console.log("eof"));';

  it('without stdin the child reads end of input at once', async () => {
    const r = await runner.run(node, ['-e', echo], { timeoutMs: 10_000 });
    expect(r).toMatchObject({ code: 0, stdout: 'eof\n' });
  });

  it('writes stdin and keeps it open until the child is stopped', async () => {
    const ac = new AbortController();
    let seen = '';
    const p = runner.run(node, ['-e', echo], {
      timeoutMs: 30_000,
      signal: ac.signal,
      stdin: 'length\n',
      onStdout: (c) => {
        seen += c;
      },
    });
    while (!seen.includes('length\n')) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 300));
    expect(seen).toBe('length\n'); // no end of input while this process holds the pipe
    ac.abort();
    await expect(p).rejects.toMatchObject({ kind: 'aborted' });
  });

  it('pipes a stream into stdin: what is written later reaches the child too', async () => {
    const ac = new AbortController();
    const input = new PassThrough();
    let seen = '';
    const p = runner.run(node, ['-e', echo], {
      timeoutMs: 30_000,
      signal: ac.signal,
      stdin: input,
      onStdout: (c) => {
        seen += c;
      },
    });
    input.write('one\n');
    while (!seen.includes('one\n')) await new Promise((r) => setTimeout(r, 10));
    input.write('two\n');
    while (!seen.includes('two\n')) await new Promise((r) => setTimeout(r, 10));
    input.end(); // the stream's end is the child's end of input
    await expect(p).resolves.toMatchObject({ code: 0, stdout: 'one\ntwo\neof\n' });
    expect(ac.signal.aborted).toBe(false);
  });

  it('rejects at once when the signal is already aborted', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(runner.run(node, ['-e', ''], { timeoutMs: 1000, signal: ac.signal })).rejects.toMatchObject({
      kind: 'aborted',
    });
  });

  it('reports a program that cannot be started', async () => {
    await expect(runner.run('/nonexistent/vpstest-program', [], { timeoutMs: 1000 })).rejects.toMatchObject({
      kind: 'spawn_failed',
    });
  });
});
