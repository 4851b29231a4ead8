import { Injectable } from '@nestjs/common';
import { ProblemException } from '../common/problem';
import { AppConfig } from '../config/app-config';
import { PrismaService } from '../prisma/prisma.service';
import { EventType } from './event-types';
import { WebhookRow } from './webhook.view';
import { newWebhookSecret, sealSecret, SECRET_HINT_LENGTH, webhookSealingKey } from './webhook-secret';
import { TargetRefused, WebhookTargets } from './webhook-target';

const WEBHOOK_COLUMNS = {
  id: true,
  url: true,
  eventTypes: true,
  secretPrefix: true,
  createdAt: true,
  failingSince: true,
  lastError: true,
  disabledAt: true,
  disabledReason: true,
} as const;

/** An account's webhook endpoints: created with a secret shown once, listed, deleted. */
@Injectable()
export class WebhooksService {
  constructor(
    private readonly prisma: PrismaService,
    private readonly config: AppConfig,
    private readonly targets: WebhookTargets,
  ) {}

  async create(
    accountId: number,
    input: { url: string; eventTypes: EventType[] },
  ): Promise<{ webhook: WebhookRow; secret: string }> {
    const url = new URL(input.url);
    try {
      await this.targets.check(url);
    } catch (e) {
      if (!(e instanceof TargetRefused)) throw e;
      throw new ProblemException({
        status: 400,
        code: 'webhook_url_not_allowed',
        messageKey: `webhook_url_${e.reason}`,
        params: { address: e.address, host: url.hostname },
        extra: { reason: e.reason },
      });
    }
    const secretKey = this.config.webhookSecretKey;
    if (!secretKey) {
      throw new ProblemException({
        status: 503,
        code: 'service_unavailable',
        params: { what: 'Webhook signing' },
      });
    }
    const secret = newWebhookSecret();
    const sealed = sealSecret(webhookSealingKey(secretKey), accountId, secret);
    const limit = this.config.webhooksPerAccountMax;
    const webhook = await this.prisma.$transaction(async (tx) => {
      // One create per account at a time, so two racing creates cannot both pass the limit.
      await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext('webhooks'), ${accountId})`;
      const used = await tx.webhook.count({ where: { accountId } });
      if (used >= limit) {
        throw new ProblemException({
          status: 400,
          code: 'webhook_limit_reached',
          params: { limit, used },
          extra: { limit, used },
        });
      }
      return tx.webhook.create({
        data: {
          accountId,
          url: url.toString(),
          eventTypes: input.eventTypes,
          secretSealed: new Uint8Array(sealed),
          secretPrefix: secret.slice(0, SECRET_HINT_LENGTH),
        },
        select: WEBHOOK_COLUMNS,
      });
    });
    return { webhook, secret };
  }

  list(accountId: number): Promise<WebhookRow[]> {
    return this.prisma.webhook.findMany({
      where: { accountId },
      orderBy: { id: 'asc' },
      select: WEBHOOK_COLUMNS,
    });
  }

  async get(accountId: number, id: number): Promise<WebhookRow> {
    const row = await this.prisma.webhook.findFirst({ where: { id, accountId }, select: WEBHOOK_COLUMNS });
    if (!row) throw new ProblemException({ status: 404, code: 'webhook_not_found' });
    return row;
  }

  /** Deletes it and what it is still owed (deliveries go with it). */
  async delete(accountId: number, id: number): Promise<void> {
    const { count } = await this.prisma.webhook.deleteMany({ where: { id, accountId } });
    if (count === 0) throw new ProblemException({ status: 404, code: 'webhook_not_found' });
  }
}
