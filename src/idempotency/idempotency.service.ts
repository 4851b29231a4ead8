import { Injectable } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { Clock } from '../common/clock';
import { ProblemException } from '../common/problem';
import { AppConfig } from '../config/app-config';
import { Prisma } from '../generated/prisma/client';
import { PrismaService } from '../prisma/prisma.service';

/** How long the first request holds its key before a retry may take over (it died). */
const LOCK_MS = 60_000;
/** How long a concurrent retry waits for the first request to finish before answering 409. */
const WAIT_FOR_FIRST_MS = 15_000;
const POLL_MS = 50;

export type IdempotencyClaim =
  { kind: 'execute'; keyId: number } | { kind: 'replay'; statusCode: number; body: unknown };

export const IDEMPOTENCY_KEY_SHAPE = /^[\x21-\x7e]{1,255}$/;

/** Stable JSON of a request body (object keys sorted), so the same request always hashes the same. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.keys(value as Record<string, unknown>)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

export function requestFingerprint(method: string, path: string, body: unknown): string {
  return createHash('sha256')
    .update(`${method}\n${path}\n${canonicalJson(body)}`)
    .digest('hex');
}

/**
 * Idempotency-Key records (per account, kept at least IDEMPOTENCY_TTL_HOURS). The first request with a
 * key claims it; a retry with the same request gets the first response; a retry with another request is
 * refused; a retry racing the first waits for it. If the first request died after its transaction
 * committed, the service finds the action linked to the key and answers from it instead of acting twice.
 */
@Injectable()
export class IdempotencyService {
  constructor(
    private readonly prisma: PrismaService,
    private readonly config: AppConfig,
    private readonly clock: Clock,
  ) {}

  async claim(accountId: number, key: string, fingerprint: string): Promise<IdempotencyClaim> {
    const deadline = Date.now() + WAIT_FOR_FIRST_MS;
    for (;;) {
      const now = this.clock.now();
      await this.prisma.idempotencyKey.deleteMany({ where: { accountId, key, expiresAt: { lt: now } } });
      const inserted = await this.prisma.$queryRaw<{ id: number }[]>(Prisma.sql`
        INSERT INTO idempotency_keys (account_id, key, fingerprint, locked_until, expires_at)
        VALUES (${accountId}, ${key}, ${fingerprint}, ${new Date(now.getTime() + LOCK_MS)},
                ${new Date(now.getTime() + this.config.idempotencyTtlHours * 3_600_000)})
        ON CONFLICT (account_id, key) DO NOTHING
        RETURNING id`);
      if (inserted.length === 1) return { kind: 'execute', keyId: inserted[0].id };

      const row = await this.prisma.idempotencyKey.findUnique({
        where: { accountId_key: { accountId, key } },
      });
      if (!row) continue; // expired and deleted in between: claim again
      if (row.fingerprint !== fingerprint) {
        throw new ProblemException({ status: 400, code: 'idempotency_key_reused' });
      }
      if (row.statusCode !== null) return { kind: 'replay', statusCode: row.statusCode, body: row.response };
      if (!row.lockedUntil || row.lockedUntil <= now) {
        // The first request died: take the key over (the service will find its action if it committed one).
        const taken = await this.prisma.idempotencyKey.updateMany({
          where: { id: row.id, statusCode: null, OR: [{ lockedUntil: null }, { lockedUntil: { lte: now } }] },
          data: { lockedUntil: new Date(now.getTime() + LOCK_MS) },
        });
        if (taken.count === 1) return { kind: 'execute', keyId: row.id };
        continue;
      }
      if (Date.now() > deadline) throw new ProblemException({ status: 409, code: 'idempotency_key_in_use' });
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  async complete(keyId: number, statusCode: number, body: unknown): Promise<void> {
    await this.prisma.idempotencyKey.update({
      where: { id: keyId },
      data: { statusCode, response: body as Prisma.InputJsonValue, lockedUntil: null },
    });
  }

  /** The first request was refused (4xx) or failed before acting: free the key for a corrected retry. */
  async release(keyId: number): Promise<void> {
    await this.prisma.$transaction(async (tx) => {
      const used = await tx.action.count({ where: { idempotencyKeyId: keyId } });
      if (used === 0) await tx.idempotencyKey.deleteMany({ where: { id: keyId, statusCode: null } });
      else await tx.idempotencyKey.updateMany({ where: { id: keyId }, data: { lockedUntil: null } });
    });
  }

  /** Housekeeping (worker): drop keys past their lifetime. */
  async deleteExpired(): Promise<number> {
    return (await this.prisma.idempotencyKey.deleteMany({ where: { expiresAt: { lt: this.clock.now() } } }))
      .count;
  }
}
