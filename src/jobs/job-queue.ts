import { Injectable, Logger, OnModuleDestroy } from '@nestjs/common';
import { Queue } from 'bullmq';
import { AppConfig } from '../config/app-config';
import { MicroBatcher } from '../common/micro-batcher';
import { RedisService } from '../redis/redis.service';
import { jobPriorityOf, OpenOperations } from './open-operations';
import { ActionKind } from '../generated/prisma/enums';

/** A job is named after its action's kind (the database's enum, the one list of them). */
export const JOB_NAMES: readonly ActionKind[] = Object.values(ActionKind);
export type JobName = ActionKind;

export interface ActionJobData {
  actionId: number;
  /** The action's account, for the worker's per-account share (absent on jobs of older versions). */
  accountId?: number;
}

/** One queue per hypervisor node; its worker is the only consumer. */
export function nodeQueueName(nodeId: number): string {
  return `node-${nodeId}`;
}

/** Job id = action id, so enqueuing the same action twice is a no-op (BullMQ refuses integer-looking ids). */
export function jobIdOf(actionId: number): string {
  return `action-${actionId}`;
}

const ENQUEUE_TIMEOUT_MS = 2000;

interface QueuedJob {
  nodeId: number;
  actionId: number;
  kind: JobName;
}

/** The queue side of jobs (Redis via BullMQ). Producers use the fail-fast shared connection. */
@Injectable()
export class JobQueue implements OnModuleDestroy {
  private readonly logger = new Logger(JobQueue.name);
  private readonly queues = new Map<number, Queue<ActionJobData>>();
  /** Each call's own outcome: null, or the error of its node's queue. */
  private readonly batcher = new MicroBatcher<QueuedJob, Error | null>((jobs) => this.addAll(jobs));

  constructor(
    private readonly redis: RedisService,
    private readonly config: AppConfig,
    private readonly open: OpenOperations,
  ) {}

  queueFor(nodeId: number): Queue<ActionJobData> {
    let q = this.queues.get(nodeId);
    if (!q) {
      q = new Queue<ActionJobData>(nodeQueueName(nodeId), {
        connection: this.redis.client,
        prefix: this.config.queuePrefix,
        skipWaitingForReady: true,
      });
      q.on('error', () => undefined);
      this.queues.set(nodeId, q);
    }
    return q;
  }

  /**
   * Adds the action's job. Jobs enqueued in the same turn of the event loop go to Redis together: one
   * `addBulk` (one MULTI) per node queue, after one statement that finds their accounts' places (the
   * job priority, see `jobPriorityOf`); each call still settles with its own outcome.
   */
  async enqueue(nodeId: number, actionId: number, kind: string): Promise<void> {
    if (!(JOB_NAMES as readonly string[]).includes(kind)) throw new Error(`unknown job kind ${kind}`);
    const failed = await this.batcher.load({ nodeId, actionId, kind: kind as JobName });
    if (failed) throw failed;
  }

  /**
   * Enqueues the job of an action the API has just committed, but never fails the accepted request for
   * it: should Redis be unreachable, the worker's dispatcher enqueues the committed pending action.
   */
  async enqueueAccepted(nodeId: number, actionId: number, kind: JobName): Promise<void> {
    try {
      await this.enqueue(nodeId, actionId, kind);
    } catch (e) {
      this.logger.warn(
        { actionId, err: e },
        'enqueue failed; the dispatcher will enqueue the committed action',
      );
    }
  }

  private async addAll(jobs: QueuedJob[]): Promise<(Error | null)[]> {
    let places;
    try {
      places = await this.open.places(jobs.map((j) => j.actionId));
    } catch (e) {
      return jobs.map(() => (e instanceof Error ? e : new Error(String(e))));
    }
    const byNode = new Map<number, number[]>();
    jobs.forEach((j, k) => byNode.set(j.nodeId, [...(byNode.get(j.nodeId) ?? []), k]));
    const out: (Error | null)[] = new Array<Error | null>(jobs.length).fill(null);
    await Promise.all(
      [...byNode].map(async ([nodeId, at]) => {
        try {
          await this.use(nodeId, (q) =>
            q.addBulk(
              at.map((k) => ({
                name: jobs[k].kind,
                data: { actionId: jobs[k].actionId, accountId: places.get(jobs[k].actionId)?.accountId },
                opts: {
                  jobId: jobIdOf(jobs[k].actionId),
                  // Every job has a priority: BullMQ takes jobs without one before all prioritized jobs.
                  priority: jobPriorityOf(places.get(jobs[k].actionId)?.place ?? 1),
                  attempts: this.config.jobAttempts,
                  backoff: { type: 'exponential', delay: this.config.jobBackoffMs },
                  removeOnComplete: { age: 7 * 86_400, count: 10_000 },
                  removeOnFail: { age: 30 * 86_400 },
                },
              })),
            ),
          );
        } catch (e) {
          for (const k of at) out[k] = e instanceof Error ? e : new Error(String(e));
        }
      }),
    );
    return out;
  }

  /** Whether the queue still holds a job for the action (in any state). */
  async hasJob(nodeId: number, actionId: number): Promise<boolean> {
    return (await this.use(nodeId, (q) => q.getJob(jobIdOf(actionId)))) !== undefined;
  }

  /** The job's state in the queue, or `missing` when the queue no longer holds it. */
  async jobState(nodeId: number, actionId: number): Promise<string> {
    return this.use(nodeId, async (q) => {
      const job = await q.getJob(jobIdOf(actionId));
      return job ? await job.getState() : 'missing';
    });
  }

  /**
   * Runs one queue operation with a deadline. A BullMQ Queue whose first connection attempt failed
   * keeps failing after Redis returns, so on any error the queue object is dropped and the next call
   * builds a fresh one (the connection itself is shared and reconnects on its own).
   */
  private async use<T>(nodeId: number, op: (q: Queue<ActionJobData>) => Promise<T>): Promise<T> {
    const q = this.queueFor(nodeId);
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        op(q),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('queue operation timed out')), ENQUEUE_TIMEOUT_MS);
        }),
      ]);
    } catch (e) {
      if (this.queues.get(nodeId) === q) this.queues.delete(nodeId);
      void q.close().catch(() => undefined);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  async onModuleDestroy(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
  }
}
