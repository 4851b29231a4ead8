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

/** The message id of an event: the same for every attempt and every endpoint (receivers dedupe on it). */
export const messageIdOf = (eventId: bigint) => `evt_${eventId}`;

const ERROR_MAX = 500;
const HOUR_MS = 3_600_000;

/**
 * Delivers the outbox to webhook endpoints (the `webhooks` process; any number may run). Each round
 * claims due deliveries with FOR UPDATE SKIP LOCKED and moves them a lease into the future in the same
 * statement, so two senders never hold one row and a sender killed mid-send lets its rows fall due
 * again (at least once). An outcome is written only while the claim is still the sender's (`attempts`
 * unchanged). A failure is retried after `base · 2^(attempt−1)` (capped) until the event is
 * `webhookRetryHours` old, then abandoned; an endpoint that has failed every attempt for that long is
 * disabled, saying why, and owes nothing more.
 */
@Injectable()
export class WebhookSender implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger(WebhookSender.name);
  private readonly sealingKeys;
  private timer: NodeJS.Timeout | null = null;
  private round: Promise<unknown> = Promise.resolve();
  private stopped = false;

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
    await this.stop();
  }

  /** No more rounds; waits for the one running. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.round;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.round = this.sendDue()
        .catch((e: unknown) => {
          this.log.error(`webhook round failed: ${e instanceof Error ? e.message : String(e)}`);
          return 0;
        })
        // A round that found work suggests more is due: look again at once; idle, wait a poll.
        .then((n) => this.schedule(n > 0 ? 0 : this.config.webhookPollIntervalMs));
    }, delayMs);
  }

  /** One round: claims up to `webhookConcurrency` due deliveries and attempts them all; returns how many. */
  async sendDue(): Promise<number> {
    const now = this.clock.now();
    const claimed = await this.prisma.$queryRaw<Claimed[]>`
      UPDATE webhook_deliveries d
      SET next_attempt_at = ${now}::timestamptz + ${this.leaseMs} * interval '1 millisecond',
          attempts = d.attempts + 1
      WHERE d.id IN (
        SELECT id FROM webhook_deliveries
        WHERE status = 'pending' AND next_attempt_at <= ${now}
        ORDER BY next_attempt_at
        LIMIT ${this.config.webhookConcurrency}
        FOR UPDATE SKIP LOCKED)
      RETURNING d.id, d.event_id, d.webhook_id, d.attempts`;
    if (claimed.length === 0) return 0;
    const [events, webhooks] = await Promise.all([
      this.prisma.event.findMany({ where: { id: { in: claimed.map((c) => c.event_id) } } }),
      this.prisma.webhook.findMany({ where: { id: { in: claimed.map((c) => c.webhook_id) } } }),
    ]);
    const bodies = await this.bodies.of(events);
    const eventById = new Map(events.map((e) => [e.id, e]));
    const webhookById = new Map(webhooks.map((w) => [w.id, w]));
    const delivered: { c: Claimed; webhookId: number; status: number }[] = [];
    await Promise.all(
      claimed.map(async (c) => {
        const event = eventById.get(c.event_id)!;
        const webhook = webhookById.get(c.webhook_id);
        if (!webhook || webhook.disabledAt) return this.abandon(c);
        const secret = openSecretWith(this.sealingKeys, webhook.accountId, Buffer.from(webhook.secretSealed));
        const outcome = secret
          ? await this.attempt(new URL(webhook.url), secret, c.event_id, bodies.get(c.event_id)!)
          : { ok: false, error: 'the signing secret does not open with WEBHOOK_SECRET_KEY' };
        if (outcome.ok) delivered.push({ c, webhookId: webhook.id, status: outcome.status! });
        else await this.recordFailure(c, webhook.id, event.createdAt, outcome);
      }),
    );
    await this.recordDelivered(delivered);
    return claimed.length;
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
  private async recordDelivered(
    delivered: { c: Claimed; webhookId: number; status: number }[],
  ): Promise<void> {
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
