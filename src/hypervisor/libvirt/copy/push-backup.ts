import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { hvError, sleep, throwIfAborted } from '../../driver-errors';
import { ServerRef, SnapshotConsistency } from '../../hypervisor-driver';
import { isDomainNotFound, isNoSpace, isNotRunning } from '../errors';
import { checkpointXml, DomainDisk, pushBackupXml } from '../domain-xml';
import { JOB_OPERATION_BACKUP, JOB_TYPE, jobProgress, parseDomJobInfoRaw } from '../parsers';
import { Toolbox } from '../tools/toolbox';
import { virshErrorText } from '../tools/virsh';

/** What a backup read adds to a snapshot's copy: a checkpoint made at the job's start, a base. */
export interface PushCheckpoints {
  /** Copy only what changed since this checkpoint (null: everything). */
  readonly incremental: string | null;
  /** The checkpoint the job creates, atomically with its start. */
  readonly create: string;
}

/**
 * The copy of a running server's disk: a push-mode backup job (`virsh backup-begin`) into `target`,
 * the guest's filesystems frozen for the job's start when its agent answers (and always thawed
 * afterwards), the job followed to its end through `virsh domjobinfo`. Returns `quiesced` when
 * filesystems were frozen, else `crash_consistent`. A job that fails or is cancelled is aborted.
 * With `checkpoints` (a backup read) the job also creates a checkpoint and may be incremental.
 */
export async function pushBackup(
  tools: Toolbox,
  server: ServerRef,
  dom: string,
  target: string,
  virtualSize: number,
  signal: AbortSignal | undefined,
  onPct: (pct: number) => void,
  checkpoints: PushCheckpoints | null = null,
): Promise<SnapshotConsistency> {
  const disks = await tools.virsh.disks(dom, signal);
  const ours = await findDisk(disks, server.diskPath);
  if (!ours?.target) {
    throw hvError(
      'hypervisor_error',
      `disk ${server.diskPath} is not attached to domain ${server.domain} (${dom})`,
    );
  }
  const targets = disks.flatMap((d) => (d.target ? [d.target] : []));
  const xml = pushBackupXml(targets, ours.target, target, checkpoints?.incremental ?? null);
  const tmpDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vps-backup-'));
  const xmlFile = path.join(tmpDir, 'backup.xml');
  await fsp.writeFile(xmlFile, xml, 'utf8');
  const checkpointFile = path.join(tmpDir, 'checkpoint.xml');
  if (checkpoints)
    await fsp.writeFile(checkpointFile, checkpointXml(targets, ours.target, checkpoints.create));

  let consistency: SnapshotConsistency = 'crash_consistent';
  let jobStarted = false;
  try {
    const agent = await agentAnswers(tools, dom);
    let freezeAttempted = false;
    let frozenCount = 0;
    let thawFailure: string | null = null;
    try {
      throwIfAborted(signal);
      if (agent) {
        freezeAttempted = true;
        // Bounded: the guest stays frozen at most this long plus the thaw.
        const fr = await tools.virsh.raw(['domfsfreeze', '--domain', dom], {
          timeoutMs: Math.min(tools.commandTimeoutMs, 30_000),
        });
        if (fr.code === 0) {
          const m = /Froze\s+(\d+)\s+filesystem/i.exec(fr.stdout);
          frozenCount = m ? Number(m[1]) : 1;
        }
        // A failed freeze only lowers the consistency to crash_consistent.
      }
      const args = ['backup-begin', '--domain', dom, '--backupxml', xmlFile];
      if (checkpoints) args.push('--checkpointxml', checkpointFile);
      // Until virsh answers, the job may or may not have started (e.g. virsh timed out): treat it as
      // started so a failure aborts it. A clean refusal (exit 1) started nothing - and must not
      // abort whatever other job the domain runs.
      jobStarted = true;
      const b = await tools.virsh.raw(args);
      if (b.code !== 0) {
        jobStarted = false;
        throw tools.virsh.failure(args, b, 'copy_failed');
      }
    } finally {
      if (freezeAttempted) thawFailure = await thaw(tools, dom);
    }
    if (thawFailure !== null) {
      // The copy's start was captured, but a guest left frozen is worse than a failed snapshot.
      throw hvError('hypervisor_error', `guest filesystems could not be thawed: ${thawFailure}`);
    }
    if (frozenCount > 0) consistency = 'quiesced';

    await waitForBackup(tools, dom, virtualSize, signal, onPct);
    jobStarted = false;
    return consistency;
  } catch (e) {
    if (jobStarted) await abortJob(tools, dom);
    throw e;
  } finally {
    await fsp.rm(tmpDir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** The domain's disk whose source is `diskPath` (as written or as resolved). */
export async function findDisk(disks: DomainDisk[], diskPath: string): Promise<DomainDisk | undefined> {
  const want = path.resolve(diskPath);
  const real = await fsp.realpath(want).catch(() => want);
  for (const d of disks) {
    if (!d.source || d.device !== 'disk') continue;
    const s = path.resolve(d.source);
    if (s === want || s === real) return d;
    const sReal = await fsp.realpath(s).catch(() => s);
    if (sReal === real) return d;
  }
  return undefined;
}

/** Whether the QEMU guest agent answers a ping within a few seconds. */
async function agentAnswers(tools: Toolbox, domain: string): Promise<boolean> {
  const r = await tools.virsh
    .raw(['qemu-agent-command', '--domain', domain, '--timeout', '5', '{"execute":"guest-ping"}'], {
      timeoutMs: 15_000,
    })
    .catch(() => null);
  return r !== null && r.code === 0 && r.stdout.includes('"return"');
}

/**
 * Thaws, retried until the toolbox's thaw deadline while the agent does not answer; returns null on
 * success, else the last error text. Giving up early would leave the guest's writes blocked.
 */
async function thaw(tools: Toolbox, domain: string): Promise<string | null> {
  const deadline = Date.now() + tools.thawDeadlineMs;
  for (;;) {
    const r = await tools.virsh.raw(['domfsthaw', '--domain', domain]).catch((e: unknown) => ({
      code: -1,
      stdout: '',
      stderr: String(e),
    }));
    if (r.code === 0) return null;
    // Nothing to thaw when the domain or its agent is gone.
    if (
      isDomainNotFound(r.stderr) ||
      isNotRunning(r.stderr) ||
      /not (connected|configured)/i.test(r.stderr)
    ) {
      return null;
    }
    if (Date.now() + 1000 > deadline) return virshErrorText(r.stderr);
    await sleep(1000);
  }
}

async function waitForBackup(
  tools: Toolbox,

  domain: string,
  virtualSize: number,
  signal: AbortSignal | undefined,
  onPct: (pct: number) => void,
): Promise<void> {
  const deadline = Date.now() + tools.copyTimeoutMs(virtualSize);
  for (;;) {
    throwIfAborted(signal);
    if (Date.now() > deadline) throw hvError('timeout', `backup of ${domain} exceeded its deadline`);
    const r = await tools.virsh.raw(['domjobinfo', '--domain', domain, '--rawstats'], { signal });
    if (r.code !== 0) throw tools.virsh.failure(['domjobinfo', '--domain', domain], r, 'copy_failed');
    const info = parseDomJobInfoRaw(r.stdout);
    if (info.type === JOB_TYPE.bounded || info.type === JOB_TYPE.unbounded) {
      const pct = jobProgress(info);
      if (pct !== null) onPct(pct);
      await sleep(tools.pollIntervalMs, signal);
      continue;
    }
    break;
  }
  // The job has ended: its completed statistics say whether it succeeded. Without them the copy
  // cannot be trusted (an incomplete target still passes `qemu-img check`).
  const args = [
    'domjobinfo',
    '--domain',
    domain,
    '--completed',
    '--keep-completed',
    '--anystats',
    '--rawstats',
  ];
  const c = await tools.virsh.raw(args);
  if (c.code !== 0) throw tools.virsh.failure(args, c, 'copy_failed');
  const done = parseDomJobInfoRaw(c.stdout);
  const detail = `backup job of ${domain} ended: ${c.stdout.replace(/\s+/g, ' ').trim()}`;
  if (done.type === JOB_TYPE.completed) {
    const op = Number(done.fields.operation);
    if (Number.isFinite(op) && op !== JOB_OPERATION_BACKUP)
      throw hvError('copy_failed', `unexpected job: ${detail}`);
    const pct = jobProgress(done);
    if (pct !== null && pct < 100) throw hvError('copy_failed', `incomplete: ${detail}`);
    onPct(100);
    return;
  }
  if (done.type === JOB_TYPE.cancelled) throw hvError(signal?.aborted ? 'cancelled' : 'copy_failed', detail);
  const errmsg = done.fields.errmsg ?? '';
  if (isNoSpace(errmsg) || isNoSpace(c.stdout)) throw hvError('insufficient_storage', detail);
  throw hvError('copy_failed', detail);
}

/** Aborts the domain's block job (if any) and waits until libvirt reports no job. */
async function abortJob(tools: Toolbox, domain: string): Promise<void> {
  await tools.virsh.raw(['domjobabort', '--domain', domain]).catch(() => undefined);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const r = await tools.virsh.raw(['domjobinfo', '--domain', domain, '--rawstats']).catch(() => null);
    if (!r || r.code !== 0) return;
    const t = parseDomJobInfoRaw(r.stdout).type;
    if (t !== JOB_TYPE.bounded && t !== JOB_TYPE.unbounded) return;
    await sleep(tools.pollIntervalMs);
  }
}
