import { Injectable } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { PrismaService } from '../prisma/prisma.service';
import { openSecretWith, sealingKeyOf, sealSecret, webhookSealingKeys } from './webhook-secret';

/** What a rotation did. */
export interface SecretRotationReport {
  /** Webhook endpoints looked at. */
  webhooks: number;
  /** Secrets re-sealed with the current key by this run. */
  resealed: number;
  /** What could not be done (left as it was): run again once fixed. */
  readonly failures: string[];
}

/** Webhook rows read per query. */
const PAGE = 200;

/**
 * Re-seals every webhook signing secret with WEBHOOK_SECRET_KEY, opening those still sealed by
 * WEBHOOK_SECRET_KEY_PREVIOUS with it (docs/operations.md "Rotate the webhook secret key"). The secrets
 * themselves do not change, so receivers notice nothing. Idempotent and resumable: a secret the current
 * key seals already is left alone, and a row is replaced only if it is still the one read; senders
 * configured with both keys open either meanwhile.
 */
@Injectable()
export class WebhookSecretRotation {
  constructor(
    private readonly prisma: PrismaService,
    private readonly config: AppConfig,
  ) {}

  async run(): Promise<SecretRotationReport> {
    const keys = webhookSealingKeys(this.config.webhookSecretKey, this.config.webhookSecretKeyPrevious);
    const current = keys.current;
    const report: SecretRotationReport = { webhooks: 0, resealed: 0, failures: [] };
    for (let after = 0; ;) {
      const rows = await this.prisma.webhook.findMany({
        where: { id: { gt: after } },
        orderBy: { id: 'asc' },
        take: PAGE,
        select: { id: true, accountId: true, secretSealed: true },
      });
      for (const w of rows) {
        // Asked only when there is a secret to re-seal, as the master key rotation does: with no
        // webhooks the command has nothing to do and says so.
        if (!current) throw new Error('WEBHOOK_SECRET_KEY is not set: there is no key to re-seal with');
        report.webhooks++;
        const sealed = Buffer.from(w.secretSealed);
        if (sealingKeyOf(keys, sealed) === current) continue;
        const secret = openSecretWith(keys, w.accountId, sealed);
        if (secret === null) {
          report.failures.push(
            `webhook ${w.id}: its secret opens with neither WEBHOOK_SECRET_KEY nor WEBHOOK_SECRET_KEY_PREVIOUS`,
          );
          continue;
        }
        const changed = await this.prisma.$executeRaw`
          UPDATE webhooks SET secret_sealed = ${sealSecret(current, w.accountId, secret)}
          WHERE id = ${w.id} AND secret_sealed = ${sealed}`;
        if (changed) report.resealed++;
      }
      if (rows.length < PAGE) return report;
      after = rows[rows.length - 1].id;
    }
  }
}
