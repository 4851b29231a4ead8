import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Clock } from '../common/clock';
import { AppConfig } from '../config/app-config';
import { PrismaService } from '../prisma/prisma.service';
import { EventBodies } from './event-bodies';
import { WebhookHttp } from './webhook-http';
import { openSecretWith, signatureHeaders, webhookSealingKeys } from './webhook-secret';

interface Claimed {
  id: bigint;
  event_id: bigint;
  webhook_id: number;
  attempts: number;
}

interface Delivered {
  c: Claimed;
  webhookId: number;
  status: number;
}

/** The message id of an event: the same for every attempt and every endpoint (receivers dedupe on it). */
export const messageIdOf = (eventId: bigint) => `evt_${eventId}`;

const ERROR_MAX = 500;
const HOUR_MS = 3_600_000;

/** Rows one claim looks at per free place, so endpoints at their limit do not starve the others. */
const CLAIM_SCAN_FACTOR = 4;
const CLAIM_SCAN_MAX = 1024;

/**
 * Delivers the outbox to webhook endpoints (the `webhooks` process; any number may run). A pump claims
 * due deliveries with FOR UPDATE SKIP LOCKED and moves them a lease into the future in the same
 * statement, so two senders never hold one row and a sender killed mid-send lets its rows fall due
 * again (at least once). Claims are pipelined: up to `webhookConcurrency` sends are in flight, at most
 * `webhookEndpointConcurrency` to one endpoint, and a free place is filled by the next claim without
 * waiting for the others (a slow endpoint holds only its own places); a claim that filled every place
 * is followed by another as soon as a send ends, otherwise the pump waits a poll. Order per endpoint
 * is not kept (receivers dedupe on webhook-id and order by the body's timestamp). An outcome is written
 * only while the claim is still the sender's (`attempts` unchanged); successes are written in batches.
 * A failure is retried after `base · 2^(attempt−1)` (capped) until the event is `webhookRetryHours`
 * old, then abandoned; an endpoint that has failed every attempt for that long is disabled, saying
 * why, and owes nothing more.
 */
@Injectable()
export class WebhookSender implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger(WebhookSender.name);
  private readonly sealingKeys;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** One claim at a time; a wake-up during it claims again right after. */
  private pumping: Promise<void> | null = null;
  private wakeAgain = false;
  /** The last claim filled every free place: more is probably due, so a send's end claims again. */
  private backlog = false;
  private readonly sends = new Set<Promise<void>>();
  private readonly sendingTo = new Map<number, number>();
  private toRecord: Delivered[] = [];
  private recording: Promise<void> | null = null;

  constructor(
    private readonly prisma: PrismaService,
    private readonly config: AppConfig,
    private readonly clock: Clock,
    private readonly bodies: EventBodies,
    private readonly http: WebhookHttp,
  ) {
    this.sealingKeys = webhookSealingKeys(config.webhookSecretKey, config.webhookSecretKeyPrevious);
  }

  /** How long a claim holds a row: longer than any one attempt can take. */
  private get leaseMs(): number {
    return 2 * this.config.webhookTimeoutMs + 1_000;
  }

  onApplicationBootstrap(): void {
    this.schedule(0);
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.pumping;
    await Promise.all(this.sends);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.pump(), delayMs);
  }

  private async pump(): Promise<void> {
    if (this.pumping) {
      this.wakeAgain = true;
      return;
    }
    this.pumping = this.claimAndStart()
      .then(() => undefined)
      .catch((e: unknown) => {
        this.backlog = false;
        this.log.error(`webhook claim failed: ${e instanceof Error ? e.message : String(e)}`);
      });
    await this.pumping;
    this.pumping = null;
    if (this.wakeAgain) {
      this.wakeAgain = false;
      this.schedule(0);
    } else if (!this.backlog) this.schedule(this.config.webhookPollIntervalMs);
  }

  /**
   * Claims due deliveries for the free places (overall and per endpoint) and attempts them all, waiting
   * for every send in flight and its outcome; returns how many it claimed. (The pump does not wait.)
   */
  async sendDue(): Promise<number> {
    const claimed = await this.claimAndStart();
    await Promise.all(this.sends);
    return claimed;
  }

  /** Claims deliveries for the free places and starts them; returns how many it claimed. */
  private async claimAndStart(): Promise<number> {
    const room = this.config.webhookConcurrency - this.sends.size;
    if (room <= 0) return 0;
    const claimed = await this.claim(room);
    this.backlog = claimed.length === room;
    if (claimed.length === 0) return 0;
    for (const c of claimed) this.sendingTo.set(c.webhook_id, (this.sendingTo.get(c.webhook_id) ?? 0) + 1);
    const loaded = this.load(claimed);
    for (const c of claimed) {
      const send: Promise<void> = loaded
        .then(({ eventById, webhookById, bodies }) =>
          this.deliver(c, eventById.get(c.event_id)!, webhookById.get(c.webhook_id), bodies.get(c.event_id)!),
        )
        .catch((e: unknown) => {
          // The row stays claimed until its lease ends, then falls due again.
          this.log.error(`webhook delivery ${c.id} failed: ${e instanceof Error ? e.message : String(e)}`);
        })
        .finally(() => {
          this.sends.delete(send);
          const n = this.sendingTo.get(c.webhook_id)! - 1;
          if (n === 0) this.sendingTo.delete(c.webhook_id);
          else this.sendingTo.set(c.webhook_id, n);
          if (this.backlog) this.schedule(0);
        });
      this.sends.add(send);
    }
    return claimed.length;
  }

  /** Up to `room` due rows, oldest first, none beyond an endpoint's free places. */
  private claim(room: number): Promise<Claimed[]> {
    const now = this.clock.now();
    const busyIds = [...this.sendingTo.keys()];
    const busyCounts = busyIds.map((id) => this.sendingTo.get(id)!);
    const scan = Math.min(room * CLAIM_SCAN_FACTOR, CLAIM_SCAN_MAX);
    return this.prisma.$queryRaw<Claimed[]>`
      WITH due AS (
        SELECT id, webhook_id, next_attempt_at FROM webhook_deliveries
        WHERE status = 'pending' AND next_attempt_at <= ${now}
        ORDER BY next_attempt_at
        LIMIT ${scan}
        FOR UPDATE SKIP LOCKED
      ), picked AS (
        SELECT r.id FROM (
          SELECT id, webhook_id, next_attempt_at,
                 row_number() OVER (PARTITION BY webhook_id ORDER BY next_attempt_at, id) AS n
          FROM due) r
        LEFT JOIN unnest(${busyIds}::int[], ${busyCounts}::int[]) AS b(webhook_id, sending)
          ON b.webhook_id = r.webhook_id
        WHERE r.n + COALESCE(b.sending, 0) <= ${this.config.webhookEndpointConcurrency}
        ORDER BY r.next_attempt_at, r.id
        LIMIT ${room}
      )
      UPDATE webhook_deliveries d
      SET next_attempt_at = ${now}::timestamptz + ${this.leaseMs} * interval '1 millisecond',
          attempts = d.attempts + 1
      FROM picked WHERE d.id = picked.id
      RETURNING d.id, d.event_id, d.webhook_id, d.attempts`;
  }

  /** The claimed rows' events, endpoints and bodies, in three queries for the whole claim. */
  private async load(claimed: Claimed[]) {
    const [events, webhooks] = await Promise.all([
      this.prisma.event.findMany({ where: { id: { in: claimed.map((c) => c.event_id) } } }),
      this.prisma.webhook.findMany({ where: { id: { in: claimed.map((c) => c.webhook_id) } } }),
    ]);
    return {
      bodies: await this.bodies.of(events),
      eventById: new Map(events.map((e) => [e.id, e])),
      webhookById: new Map(webhooks.map((w) => [w.id, w])),
    };
  }

  private async deliver(
    c: Claimed,
    event: { createdAt: Date },
    webhook:
      | { id: number; accountId: number; url: string; secretSealed: Uint8Array; disabledAt: Date | null }
      | undefined,
    body: string,
  ): Promise<void> {
    if (!webhook || webhook.disabledAt) return this.abandon(c);
    const secret = openSecretWith(this.sealingKeys, webhook.accountId, Buffer.from(webhook.secretSealed));
    const outcome = secret
      ? await this.attempt(new URL(webhook.url), secret, c.event_id, body)
      : { ok: false, error: 'the signing secret does not open with this WEBHOOK_SECRET_KEY' };
    if (outcome.ok) await this.queueDelivered({ c, webhookId: webhook.id, status: outcome.status! });
    else await this.recordFailure(c, webhook.id, event.createdAt, outcome);
  }

  /** Resolves once the success is written, with every other success that came meanwhile. */
  private queueDelivered(d: Delivered): Promise<void> {
    this.toRecord.push(d);
    this.recording ??= (async () => {
      while (this.toRecord.length > 0) {
        const batch = this.toRecord;
        this.toRecord = [];
        // A batch not written stays claimed and is sent again after its lease: at least once.
        await this.recordDelivered(batch).catch((e: unknown) =>
          this.log.error(
            `recording ${batch.length} deliveries failed: ${e instanceof Error ? e.message : String(e)}`,
          ),
        );
      }
    })().finally(() => (this.recording = null));
    return this.recording;
  }

  private async attempt(
    url: URL,
    secret: string,
    eventId: bigint,
    body: string,
  ): Promise<{ ok: boolean; status?: number; error?: string }> {
    const headers = signatureHeaders(secret, messageIdOf(eventId), this.clock.now(), body);
    try {
      const { status } = await this.http.post(url, headers, body, this.config.webhookTimeoutMs);
      return status >= 200 && status < 300
        ? { ok: true, status }
        : { ok: false, status, error: `HTTP ${status}` };
    } catch (e) {
      return { ok: false, error: e instanceof Error ? e.message : String(e) };
    }
  }

  private async abandon(c: Claimed): Promise<void> {
    await this.prisma.webhookDelivery.updateMany({
      where: { id: c.id, attempts: c.attempts },
      data: { status: 'abandoned', attempts: c.attempts - 1 },
    });
  }

  /** The round's successes in one transaction: each row still the sender's, its endpoint healthy again. */
  private async recordDelivered(delivered: Delivered[]): Promise<void> {
    if (delivered.length === 0) return;
    const now = this.clock.now();
    const ids = delivered.map((d) => d.c.id);
    const attempts = delivered.map((d) => d.c.attempts);
    const statuses = delivered.map((d) => d.status);
    await this.prisma.$transaction([
      this.prisma.$executeRaw`
        UPDATE webhook_deliveries d
        SET status = 'delivered', delivered_at = ${now}, last_status = o.status, last_error = NULL
        FROM unnest(${ids}::bigint[], ${attempts}::int[], ${statuses}::int[]) AS o(id, attempts, status)
        WHERE d.id = o.id AND d.attempts = o.attempts AND d.status = 'pending'`,
      this.prisma.webhook.updateMany({
        where: { id: { in: [...new Set(delivered.map((d) => d.webhookId))] }, failingSince: { not: null } },
        data: { failingSince: null, lastError: null },
      }),
    ]);
  }

  private async recordFailure(
    c: Claimed,
    webhookId: number,
    eventCreatedAt: Date,
    outcome: { status?: number; error?: string },
  ): Promise<void> {
    const now = this.clock.now();
    const mine = { id: c.id, attempts: c.attempts, status: 'pending' as const };
    const error = (outcome.error ?? 'failed').slice(0, ERROR_MAX);
    const retryMs = this.config.webhookRetryHours * HOUR_MS;
    const delay = Math.min(
      this.config.webhookBackoffBaseMs * 2 ** Math.min(c.attempts - 1, 40),
      this.config.webhookBackoffMaxMs,
    );
    const next = new Date(now.getTime() + delay);
    const giveUp = next.getTime() - eventCreatedAt.getTime() > retryMs;
    await this.prisma.$transaction(async (tx) => {
      await tx.webhookDelivery.updateMany({
        where: mine,
        data: giveUp
          ? { status: 'abandoned', lastStatus: outcome.status ?? null, lastError: error }
          : { nextAttemptAt: next, lastStatus: outcome.status ?? null, lastError: error },
      });
      await tx.$executeRaw`
        UPDATE webhooks SET failing_since = COALESCE(failing_since, ${now}), last_error = ${error}
        WHERE id = ${webhookId}`;
      // Failing every attempt for the whole retry window — reached now, or by the time the event that
      // runs out of retries here would have been tried again: disabled, and owed nothing more.
      const windowEnd = giveUp ? next : now;
      const disabled = await tx.$executeRaw`
        UPDATE webhooks SET disabled_at = ${now},
          disabled_reason = ${`every delivery failed for ${this.config.webhookRetryHours} hours; last: ${error}`.slice(0, ERROR_MAX)}
        WHERE id = ${webhookId} AND disabled_at IS NULL
          AND failing_since <= ${new Date(windowEnd.getTime() - retryMs)}`;
      if (disabled) {
        await tx.webhookDelivery.updateMany({
          where: { webhookId, status: 'pending' },
          data: { status: 'abandoned' },
        });
        this.log.warn(`webhook ${webhookId} disabled: ${error}`);
      }
    });
  }
}
