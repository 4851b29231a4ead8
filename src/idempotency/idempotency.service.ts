import { Injectable } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { Clock } from '../common/clock';
import { ProblemException } from '../common/problem';
import { AppConfig } from '../config/app-config';
import { PrismaService } from '../prisma/prisma.service';

/** How long the first request holds its key before a retry may take over (it died). */
const LOCK_MS = 60_000;
/** How long a concurrent retry waits for the first request to finish before answering 409. */
const WAIT_FOR_FIRST_MS = 15_000;
const POLL_MS = 50;

/** The row of claim's statement: the inserted key's id, or the existing key. */
interface ClaimRow {
  inserted_id: number | null;
  id: number | null;
  fingerprint: string | null;
  status_code: number | null;
  response: unknown;
  locked_until: Date | null;
  expires_at: Date;
}

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

  /**
   * One statement per attempt in the common cases: insert the key (first request), or, when it exists,
   * read it in the same statement (a replay, a reuse, or a first request still running). Rare cases take
   * one more: an expired key is deleted (its actions unlinked by the foreign key) and claimed anew, a key
   * whose first request died is taken over.
   */
  async claim(accountId: number, key: string, fingerprint: string): Promise<IdempotencyClaim> {
    const deadline = Date.now() + WAIT_FOR_FIRST_MS;
    for (;;) {
      const now = this.clock.now();
      const [r] = await this.prisma.$queryRaw<ClaimRow[]>`
        WITH ins AS (
          INSERT INTO idempotency_keys (account_id, key, fingerprint, locked_until, expires_at)
          VALUES (${accountId}::int, ${key}::varchar, ${fingerprint}::char(64),
                  ${new Date(now.getTime() + LOCK_MS)}::timestamptz,
                  ${new Date(now.getTime() + this.config.idempotencyTtlHours * 3_600_000)}::timestamptz)
          ON CONFLICT (account_id, key) DO NOTHING
          RETURNING id
        )
        SELECT i.id AS inserted_id, k.id, k.fingerprint, k.status_code, k.response, k.locked_until, k.expires_at
        FROM (SELECT 1 AS one) base
        LEFT JOIN ins i ON true
        LEFT JOIN idempotency_keys k
          ON k.account_id = ${accountId}::int AND k.key = ${key}::varchar AND NOT EXISTS (SELECT 1 FROM ins)`;
      if (r.inserted_id !== null) return { kind: 'execute', keyId: r.inserted_id };
      // Neither inserted nor seen: the conflicting row was committed after this statement's snapshot
      // was taken (the insert waited for it), or deleted meanwhile. The next attempt sees it.
      if (r.id === null) continue;
      if (r.expires_at < now) {
        await this.prisma
          .$executeRaw`DELETE FROM idempotency_keys WHERE id = ${r.id}::int AND expires_at < ${now}::timestamptz`;
        continue;
      }
      if (r.fingerprint !== fingerprint) {
        throw new ProblemException({ status: 400, code: 'idempotency_key_reused' });
      }
      if (r.status_code !== null) return { kind: 'replay', statusCode: r.status_code, body: r.response };
      if (!r.locked_until || r.locked_until <= now) {
        // The first request died: take the key over (the service will find its action if it committed one).
        const taken = await this.prisma.$executeRaw`
          UPDATE idempotency_keys SET locked_until = ${new Date(now.getTime() + LOCK_MS)}::timestamptz
          WHERE id = ${r.id}::int AND status_code IS NULL
            AND (locked_until IS NULL OR locked_until <= ${now}::timestamptz)`;
        if (taken === 1) return { kind: 'execute', keyId: r.id };
        continue;
      }
      if (Date.now() > deadline) throw new ProblemException({ status: 409, code: 'idempotency_key_in_use' });
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  async complete(keyId: number, statusCode: number, body: unknown): Promise<void> {
    await this.prisma.$executeRaw`
      UPDATE idempotency_keys
      SET status_code = ${statusCode}::int, response = ${body === undefined ? null : JSON.stringify(body)}::jsonb, locked_until = NULL
      WHERE id = ${keyId}::int`;
  }

  /**
   * The first request was refused (4xx) or failed before acting: free the key for a corrected retry. One
   * statement: deleted when no action is linked to it, else only unlocked (the action stays findable).
   */
  async release(keyId: number): Promise<void> {
    await this.prisma.$executeRaw`
      WITH used AS (SELECT EXISTS (SELECT 1 FROM actions WHERE idempotency_key_id = ${keyId}::int) AS yes),
      gone AS (
        DELETE FROM idempotency_keys
        WHERE id = ${keyId}::int AND status_code IS NULL AND NOT (SELECT yes FROM used)
        RETURNING id
      )
      UPDATE idempotency_keys SET locked_until = NULL WHERE id = ${keyId}::int AND (SELECT yes FROM used)`;
  }

  /** Housekeeping (worker): drop keys past their lifetime. */
  async deleteExpired(): Promise<number> {
    return (await this.prisma.idempotencyKey.deleteMany({ where: { expiresAt: { lt: this.clock.now() } } }))
      .count;
  }
}
