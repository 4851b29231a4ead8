import {
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
  OnApplicationShutdown,
  Optional,
} from '@nestjs/common';
import { DelayedError, Job, UnrecoverableError, WaitingError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { AppConfig } from '../config/app-config';
import { HYPERVISOR_DRIVER, HypervisorDriver } from '../hypervisor/hypervisor-driver';
import { JobMetrics } from '../metrics/job-metrics';
import { PrismaService } from '../prisma/prisma.service';
import { RedisService } from '../redis/redis.service';
import { IdempotencyService } from '../idempotency/idempotency.service';
import { ActionRunner } from './action-runner.service';
import { ActionRunLocks } from './action-run-locks';
import { FairSlots } from './fair-slots';
import { PowerStateReconciler } from './power-state-reconciler';
import { OpenOperations } from './open-operations';
import { ActionJobData, JOB_NAMES, JobQueue, nodeQueueName } from './job-queue';
import { WORKER_NODE, WorkerNode } from './worker-node';

/**
 * The worker's loop: consumes its node's queue (BullMQ), and, as a transactional outbox, re-enqueues
 * committed `pending` actions of its node that have no job (Redis was down when they were accepted).
 * On start it first removes what interrupted operations left on disk.
 */
@Injectable()
export class NodeWorkerService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(NodeWorkerService.name);
  private worker?: Worker<ActionJobData>;
  /**
   * Hypervisor operations at once (WORKER_CONCURRENCY), at most WORKER_ACCOUNT_CONCURRENCY of one
   * account, shared fairly; the other jobs held wait for a slot here.
   */
  private readonly slots: FairSlots;
  /** Jobs this worker handed back for later (their account held its share), oldest first, by account. */
  private readonly deferred = new Map<number, Map<string, Job<ActionJobData>>>();
  /** Aborted by stop(): jobs still waiting for a slot go back to the queue. */
  private readonly stopping = new AbortController();
  private connection?: Redis;
  private dispatchTimer?: NodeJS.Timeout;
  private reaperTimer?: NodeJS.Timeout;
  private reaping = false;
  private dispatching = false;
  /** Dispatcher and reaper passes its timers started, awaited by stop(). */
  private readonly passes = new Set<Promise<unknown>>();

  constructor(
    private readonly prisma: PrismaService,
    private readonly redis: RedisService,
    private readonly config: AppConfig,
    private readonly queue: JobQueue,
    private readonly runner: ActionRunner,
    private readonly idempotency: IdempotencyService,
    private readonly open: OpenOperations,
    private readonly power: PowerStateReconciler,
    private readonly runLocks: ActionRunLocks,
    @Inject(WORKER_NODE) private readonly node: WorkerNode,
    @Inject(HYPERVISOR_DRIVER) private readonly driver: HypervisorDriver,
    @Optional() private readonly metrics: JobMetrics = JobMetrics.none,
  ) {
    this.slots = new FairSlots(config.workerConcurrency, config.workerAccountConcurrency, (account) =>
      this.promoteDeferred(account),
    );
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.cleanupInterrupted();
    this.connection = this.redis.newBullConnection();
    this.worker = new Worker<ActionJobData>(
      nodeQueueName(this.node.id),
      // A processor of one parameter: BullMQ then makes no AbortController per job. Its signal would
      // abort only through Worker.cancelJob/cancelAllJobs, which nothing calls (shutdown lets jobs finish);
      // the runner has its own deadline (OPERATION_TIMEOUT_MS).
      (job, token) => this.process(job, token),
      {
        connection: this.connection,
        prefix: this.config.queuePrefix,
        // More jobs than hypervisor slots: fetching and finishing jobs in the queue (round trips to
        // Redis) overlaps the operations running; a job beyond WORKER_CONCURRENCY waits for a slot.
        concurrency: Math.max(this.config.workerJobsInFlight, this.config.workerConcurrency),
        // A worker that dies stops renewing its job locks; after JOB_LOCK_MS another worker's stalled
        // check puts the job back in the queue (at most twice, then it fails).
        lockDuration: this.config.jobLockMs,
        stalledInterval: this.config.jobStalledIntervalMs,
        maxStalledCount: 2,
        autorun: true,
      },
    );
    this.worker.on('error', (err) => this.logger.warn({ err }, 'queue connection error'));
    this.dispatchTimer = setInterval(() => this.pass(this.dispatchPending()), this.config.dispatchIntervalMs);
    this.dispatchTimer.unref();
    this.reaperTimer = setInterval(() => this.pass(this.reap()), this.config.reaperIntervalMs);
    this.reaperTimer.unref();
    this.logger.log(
      { node: this.node.name, queue: nodeQueueName(this.node.id), driver: this.driver.name },
      'worker started',
    );
  }

  async onApplicationShutdown(): Promise<void> {
    await this.stop();
  }

  /**
   * Stops taking jobs and waits for the running ones (and a dispatcher or reaper pass) to finish.
   * Idempotent. The worker application's closing calls it before any module closes (WorkerModule).
   */
  async stop(): Promise<void> {
    clearInterval(this.dispatchTimer);
    clearInterval(this.reaperTimer);
    await Promise.allSettled([...this.passes]);
    this.stopping.abort(); // jobs waiting for a slot go back to the queue, no attempt used
    // Lets running jobs finish; jobs not finished in time are taken up again by stalled-job recovery.
    await this.worker?.close();
    this.worker = undefined;
    await this.driver.idle?.(); // e.g. the unlink of a disk a restore replaced
    // BullMQ does not close a connection it was given: without this the process never exits.
    this.connection?.disconnect();
  }

  private pass(run: Promise<unknown>): void {
    this.passes.add(run);
    void run.finally(() => this.passes.delete(run)).catch(() => undefined);
  }

  /**
   * Thin: the job names a kind and an action; the runner does the work once a slot is free. A job
   * still waiting for a slot when the worker stops goes back to the queue untouched (its action is still
   * pending and no attempt is used), for this worker's successor. A job whose account already holds its
   * share of this worker goes back to the queue for later (delayed, no attempt used, its priority kept),
   * so the worker's room stays open to other accounts' jobs; it is promoted as soon as one of its
   * account's operations ends, and comes back on its own after its delay should this worker die.
   */
  async process(job: Job<ActionJobData>, token?: string): Promise<string> {
    if (!(JOB_NAMES as readonly string[]).includes(job.name))
      throw new UnrecoverableError(`unknown job ${job.name}`);
    const account = await this.accountOf(job);
    this.deferred.get(account)?.delete(job.id!);
    let slot = this.slots.tryEnter(account, this.stopping.signal);
    if (!slot) {
      try {
        await job.moveToDelayed(Date.now() + deferralMs(job.opts.priority), token);
        this.remember(account, job);
        this.metrics.deferred();
        throw new DelayedError();
      } catch (e) {
        if (e instanceof DelayedError) throw e;
        // The queue could not take it back: hold it here instead, beyond the account's share.
        this.logger.warn({ err: e, jobId: job.id }, 'could not defer a job; it waits here');
        slot = this.slots.enter(account, this.stopping.signal);
      }
    }
    let release: () => void;
    try {
      release = await slot;
    } catch {
      await job.moveToWait(token);
      throw new WaitingError();
    }
    let unlock: (() => Promise<void>) | null = null;
    try {
      unlock = await this.runLocks.tryHold(job.data.actionId);
      if (!unlock) {
        // Another attempt runs this action now (this job was handed over while it still ran): it
        // ends the action; this attempt must not touch the disk beside it. The job goes back to the
        // queue for later (delayed, no attempt used) rather than completing: the running attempt's
        // lapsed job lock can no longer ask for a retry, nor can a dead one, so the action keeps its
        // job; once the action has ended, the job comes back, finds it finished and completes.
        this.logger.warn(
          { jobId: job.id, actionId: job.data.actionId },
          'action already running; attempt stands down',
        );
        try {
          await job.moveToDelayed(Date.now() + this.config.jobLockMs, token);
        } catch (e) {
          this.logger.warn({ err: e, jobId: job.id }, 'could not put a duplicate attempt back; it ends');
          return 'duplicate';
        }
        throw new DelayedError();
      }
      // A RetryLaterError thrown by the runner makes BullMQ retry with back-off; a final failure is
      // recorded on the action by the runner and the job itself completes.
      return await this.metrics.track(job.name, () =>
        this.runner.run(job.data.actionId, {
          attempt: job.attemptsMade + 1,
          maxAttempts: job.opts.attempts ?? 1,
          hypervisorDone: release, // the slot is free while the outcome is written
        }),
      );
    } finally {
      release();
      await unlock?.();
      // The operation may have stopped, started or replaced the domain: show what it is now.
      this.power.nudge();
    }
  }

  /** The job's account; jobs enqueued by an older version do not carry it (0: no such action). */
  private async accountOf(job: Job<ActionJobData>): Promise<number> {
    if (job.data.accountId !== undefined) return job.data.accountId;
    return (await this.open.places([job.data.actionId])).get(job.data.actionId)?.accountId ?? 0;
  }

  private remember(account: number, job: Job<ActionJobData>): void {
    let jobs = this.deferred.get(account);
    if (!jobs) this.deferred.set(account, (jobs = new Map()));
    jobs.set(job.id!, job);
  }

  /** One of the account's operations ended: its oldest deferred job may come back now. */
  private promoteDeferred(account: number): void {
    if (this.stopping.signal.aborted) return;
    const jobs = this.deferred.get(account);
    const next = jobs?.values().next().value;
    if (!jobs || !next) return;
    jobs.delete(next.id!);
    if (jobs.size === 0) this.deferred.delete(account);
    // Already back (its delay ran out) or gone: nothing to do, it is not lost either way.
    void next.promote().catch(() => undefined);
  }

  /** Enqueues committed pending actions of this node that the queue does not hold. Safe to repeat. */
  async dispatchPending(): Promise<number> {
    if (this.dispatching) return 0;
    this.dispatching = true;
    let enqueued = 0;
    try {
      const pending = await this.prisma.action.findMany({
        where: {
          status: 'pending',
          server: { nodeId: this.node.id },
          createdAt: { lt: new Date(Date.now() - 1000) },
        },
        select: { id: true, kind: true },
        orderBy: { id: 'asc' },
        take: 500,
      });
      for (const a of pending) {
        if (!(await this.queue.hasJob(this.node.id, a.id))) {
          await this.queue.enqueue(this.node.id, a.id, a.kind);
          enqueued++;
        }
      }
      if (enqueued) this.logger.log({ enqueued }, 'dispatched pending actions');
    } catch (e) {
      this.logger.warn({ err: e }, 'dispatch failed; will retry');
    } finally {
      this.dispatching = false;
    }
    return enqueued;
  }

  /**
   * Fails running actions of this node whose heartbeat is older than ACTION_STALE_MS and whose job the
   * queue no longer holds (or holds as finished), so nothing stays "in progress" or "restoring" forever.
   * A job that is still queued or active is left to BullMQ (stalled-job recovery re-runs a dead
   * worker's job), and so is an action whose run lock an attempt holds (ActionRunLocks: it is alive, in
   * any worker); the reaper holds that lock while it fails one, so no attempt starts beside it. Also
   * drops expired Idempotency-Keys.
   */
  async reap(): Promise<number> {
    if (this.reaping) return 0;
    this.reaping = true;
    let reaped = 0;
    try {
      const stale = await this.prisma.action.findMany({
        where: {
          status: 'running',
          server: { nodeId: this.node.id },
          OR: [
            { heartbeatAt: null },
            { heartbeatAt: { lt: new Date(Date.now() - this.config.actionStaleMs) } },
          ],
        },
        select: { id: true },
      });
      for (const a of stale) {
        const state = await this.queue.jobState(this.node.id, a.id);
        if (['active', 'waiting', 'delayed', 'prioritized', 'waiting-children'].includes(state)) continue;
        // A silent heartbeat and a finished or missing job do not prove the attempt dead: a starved
        // event loop stops the heartbeat and loses the job lock while the attempt still writes the
        // disk, and a job handed over can end without it (a duplicate that could not be put back, an
        // operator's removal). The attempt's run lock does: failing the action (and restarting the
        // server) beside a live restore would report a failure over a replaced disk.
        const unlock = await this.runLocks.tryHold(a.id);
        if (!unlock) continue;
        let outcome: 'failed' | 'skipped';
        try {
          outcome = await this.runner.abandon(
            a.id,
            'The operation was interrupted on the hypervisor host and did not complete. Please try again.',
          );
        } finally {
          await unlock();
        }
        if (outcome === 'failed') {
          reaped++;
          this.logger.warn({ actionId: a.id, jobState: state }, 'reaped a stale action');
        }
      }
      await this.idempotency.deleteExpired();
    } catch (e) {
      this.logger.warn({ err: e }, 'reaper pass failed; will retry');
    } finally {
      this.reaping = false;
    }
    return reaped;
  }

  /**
   * Removes partial files of interrupted operations and logs whose they were; their still-open actions
   * are failed by `reap`, once BullMQ no longer holds their jobs.
   */
  private async cleanupInterrupted(): Promise<void> {
    const servers = await this.prisma.server.findMany({
      where: { nodeId: this.node.id },
      select: { diskPath: true },
    });
    const { partialSnapshotIds } = await this.driver.cleanupInterrupted(
      this.node.snapshotDir,
      servers.map((s) => s.diskPath),
    );
    if (partialSnapshotIds.length) {
      this.logger.warn({ partialSnapshotIds }, 'removed partial snapshot files of interrupted jobs');
    }
  }
}

/**
 * How long a deferred job stays away unless promoted: longer the further back it is in its account's
 * line (its priority is its place), so a long line costs the queue a few fetches a second, not one per
 * job; bounded, so jobs come back by themselves after a worker died with the list of what it deferred.
 */
export function deferralMs(priority: number | undefined): number {
  return Math.min(250 * Math.max(1, priority ?? 1), 30_000);
}
