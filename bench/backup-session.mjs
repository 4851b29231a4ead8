/* global performance */
// The fixed cost of an incremental backup read of a shut-off server: `openBackupRead` + `close` of the
// libvirt driver, every tool process it runs traced (command, start, end), on a qcow2 of a defined,
// shut-off domain with `--changed-mib` written through qemu-io between reads (what a guest's writes do
// to the persistent dirty bitmaps). With `--base=<checkout>` (built: `npm run build` there) the two
// builds alternate round by round in this one process, each on its own disk and domain, the first
// side flipping every round, so both see the same load.
//
//   npm run build && node bench/backup-session.mjs [--base=/path/to/other/checkout] [--rounds=6]
//        [--changed-mib=16] [--trace]
//
// Process counts and the serial depth do not depend on the machine's load; wall times do (the load
// average is printed beside them).
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineDomain, sh, undefineDomain } from './libvirt-lab.mjs';

const require = createRequire(import.meta.url);
const MiB = 1024 * 1024;
const CHUNK = 4 * MiB;

const arg = (name, dflt) => {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : dflt;
};
const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const rounds = Math.max(1, Number(arg('rounds', '6')) || 6);
const changedChunks = Math.max(1, Math.round((Number(arg('changed-mib', '16')) * MiB) / CHUNK));
const trace = process.argv.includes('--trace');
const base = arg('base', null);

/** A driver of the build in `appDir` whose every tool process is recorded in `log`. */
function tracedDriver(appDir, root, log) {
  const dist = (p) => require(path.join(appDir, 'dist', p));
  const { ProcessRunner } = dist('hypervisor/libvirt/process-runner.js');
  const { LibvirtHypervisorDriver } = dist('hypervisor/libvirt/libvirt-hypervisor-driver.js');
  class Traced extends ProcessRunner {
    async run(cmd, args, o) {
      const rec = { cmd: path.basename(cmd), args, start: performance.now(), end: null };
      log.push(rec);
      try {
        return await super.run(cmd, args, o);
      } finally {
        rec.end = performance.now();
      }
    }
  }
  return new LibvirtHypervisorDriver({
    uri: process.env.LIBVIRT_URI || 'qemu:///system',
    imageRoots: [root],
    runner: new Traced(),
  });
}

/** A 2 GiB qcow2 with 64 MiB of random data in 16 runs; returns the chunk offsets holding data. */
function makeDisk(disk) {
  const raw = `${disk}.raw`;
  const fd = fs.openSync(raw, 'w');
  fs.ftruncateSync(fd, 2048 * MiB);
  const offsets = [];
  for (let p = 0; p < 16; p++) {
    const off = p * 128 * MiB;
    fs.writeSync(fd, crypto.randomBytes(CHUNK), 0, CHUNK, off);
    offsets.push(off);
  }
  fs.closeSync(fd);
  sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, disk]);
  fs.rmSync(raw);
  return offsets;
}

function changeDisk(disk, offsets, work) {
  const args = ['-f', 'qcow2'];
  const picked = [...offsets].sort(() => Math.random() - 0.5).slice(0, changedChunks);
  const files = picked.map((off, i) => {
    const f = path.join(work, `change-${i}.bin`);
    fs.writeFileSync(f, crypto.randomBytes(CHUNK));
    args.push('-c', `write -q -s ${f} ${off} ${CHUNK}`);
    return f;
  });
  sh('qemu-io', [...args, disk]);
  for (const f of files) fs.rmSync(f);
}

/** The longest chain of processes that ran one after the other (none overlapping the next). */
function serialDepth(log) {
  const sorted = [...log].sort((a, b) => a.start - b.start);
  const depth = sorted.map(() => 1);
  for (let i = 0; i < sorted.length; i++) {
    for (let j = 0; j < i; j++) {
      if (sorted[j].end <= sorted[i].start) depth[i] = Math.max(depth[i], depth[j] + 1);
    }
  }
  return Math.max(0, ...depth);
}

/** A step's name: virsh and its command list, qemu-io's lock, else the tool and its subcommand. */
const label = (r) => {
  if (r.cmd === 'virsh')
    return `virsh ${r.args
      .slice(3)
      .join(' ')
      .replace(/ --domain [0-9a-f-]+/g, '')}`;
  if (r.cmd === 'stdbuf') return 'qemu-io (image lock, held until close)';
  if (r.cmd === 'setpriv') return 'qemu-nbd (image lock and bitmap, held until close)';
  return `${r.cmd} ${r.args[0]}`;
};

async function main() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-session-'));
  const sides = [
    { name: 'this', appDir: here },
    ...(base ? [{ name: 'base', appDir: path.resolve(base) }] : []),
  ];
  const results = [];
  try {
    for (const s of sides) {
      s.log = [];
      s.driver = tracedDriver(s.appDir, work, s.log);
      s.disk = path.join(work, `${s.name}.qcow2`);
      s.offsets = makeDisk(s.disk);
      s.domName = `bench-session-${process.pid}-${s.name}`;
      s.server = { id: 1, domain: s.domName, domainUuid: defineDomain(s.domName, s.disk), diskPath: s.disk };
      // The first, full read: outside the timing.
      const first = await s.driver.openBackupRead(s.server, { since: null, checkpoint: `${s.name}-0` });
      await first.close({ keepCheckpoint: true });
      s.since = `${s.name}-0`;
    }
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? sides : [...sides].reverse();
      for (const s of order) {
        changeDisk(s.disk, s.offsets, work);
        s.log.length = 0;
        const checkpoint = `${s.name}-${round + 1}`;
        const load = os.loadavg()[0];
        const t0 = performance.now();
        const session = await s.driver.openBackupRead(s.server, { since: s.since, checkpoint });
        const t1 = performance.now();
        if (session.mode !== 'incremental')
          throw new Error(`${s.name}: ${session.mode} (${session.fullReason})`);
        const changed = session.extents.reduce((n, e) => n + e.length, 0);
        await session.close({ keepCheckpoint: true });
        const t2 = performance.now();
        s.since = checkpoint;
        const r = {
          side: s.name,
          round,
          load,
          openMs: t1 - t0,
          closeMs: t2 - t1,
          changedMiB: changed / MiB,
          processes: s.log.length,
          serialDepth: serialDepth(s.log),
          steps: s.log.map((x) => ({ what: label(x), start: x.start - t0, end: x.end - t0 })),
        };
        results.push(r);
        console.log(
          `${s.name} round ${round}: open ${r.openMs.toFixed(0)} ms, close ${r.closeMs.toFixed(0)} ms, ` +
            `${r.processes} processes, serial depth ${r.serialDepth}, ${r.changedMiB} MiB changed, load ${load.toFixed(1)}`,
        );
        if (trace) {
          for (const x of r.steps)
            console.log(`    ${x.start.toFixed(0).padStart(6)} → ${x.end.toFixed(0).padStart(6)}  ${x.what}`);
        }
      }
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    for (const s of sides) {
      const mine = results.filter((r) => r.side === s.name);
      console.log(
        `${s.name}: open+close median ${median(mine.map((r) => r.openMs + r.closeMs)).toFixed(0)} ms ` +
          `(open ${median(mine.map((r) => r.openMs)).toFixed(0)}, close ${median(mine.map((r) => r.closeMs)).toFixed(0)}), ` +
          `${mine[0].processes} processes, serial depth ${mine[0].serialDepth}`,
      );
    }
    const out = path.join(
      here,
      'bench',
      'results',
      `backup-session-${new Date().toISOString().replace(/[:.]/g, '-')}.json`,
    );
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, JSON.stringify({ rounds, changedChunks, base, results }, null, 2));
    console.log(`results: ${path.relative(here, out)}`);
  } finally {
    for (const s of sides) {
      if (!s.domName) continue;
      try {
        for (const n of sh('virsh', ['-c', 'qemu:///system', 'checkpoint-list', s.domName, '--name']).split(
          '\n',
        )) {
          if (n.trim())
            execFileSync('virsh', [
              '-c',
              'qemu:///system',
              'checkpoint-delete',
              s.domName,
              n.trim(),
              '--metadata',
            ]);
        }
      } catch {
        /* already gone */
      }
      undefineDomain(s.domName);
    }
    fs.rmSync(work, { recursive: true, force: true });
  }
}

await main();
