import { Injectable, NestMiddleware, OnModuleDestroy } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { Principal } from '../auth/principal';
import { Clock } from '../common/clock';
import { requestIdOf } from '../common/request-context';
import { AppConfig } from '../config/app-config';
import { AuditRecord, AuditService } from './audit.service';

/** The window over which refusals from one source are counted into one summary row. */
export const REFUSAL_WINDOW_MS = 60_000;
/** Longest request path an audit row keeps (a path is the client's to make as long as it likes). */
const PATH_MAX = 256;
/** The audit table's `ip` column width. */
const IP_MAX = 64;

const ACTIONS: Record<number, { action: string; code: string }> = {
  401: { action: 'auth.unauthorized', code: 'unauthorized' },
  403: { action: 'auth.forbidden', code: 'forbidden' },
};

/** One refused request, as much as is known of it (no account before authentication). */
export interface Refusal {
  status: 401 | 403;
  ip: string | null;
  requestId: string;
  method: string;
  /** Without the query string, at most PATH_MAX characters. */
  path: string;
  accountId: number | null;
  tokenId: number | null;
}

interface Tally {
  first: Refusal;
  /** Refusals after the first within the window. */
  repeats: number;
  firstRepeatAt: Date | null;
  lastAt: Date | null;
}

/**
 * 401 and 403 answers in the audit log at a bounded cost, whoever sends them. A source is a (status,
 * IP, token) triple. Within a window of REFUSAL_WINDOW_MS, a source's first refusal is written at once
 * as its own row (request id, method, path, IP, and the account and token a 403 knows); its further
 * refusals are only counted, and written as one summary row when the window closes. At most
 * `AUDIT_REFUSAL_SOURCES_PER_MINUTE` sources are followed per window; refusals from sources beyond
 * them are counted into one overflow row per status. So a flood of bad tokens writes at most
 * 2 × sources + 2 rows per window and replica, however many requests it sends, and holds as many
 * tallies in memory. Rows go through AuditService's batched INSERT.
 */
@Injectable()
export class AuthRefusalAudit implements OnModuleDestroy {
  private sources = new Map<string, Tally>();
  private overflow = new Map<number, { count: number; firstAt: Date; lastAt: Date }>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly audit: AuditService,
    private readonly clock: Clock,
    private readonly config: AppConfig,
  ) {
    this.timer = setInterval(() => void this.flush(), REFUSAL_WINDOW_MS);
    this.timer.unref();
  }

  /** Notes one refusal: its own row when its source is new in this window, else a count. */
  note(r: Refusal): void {
    const key = `${r.status}|${r.ip ?? ''}|${r.tokenId ?? ''}`;
    const now = this.clock.now();
    const known = this.sources.get(key);
    if (known) {
      known.repeats++;
      known.firstRepeatAt ??= now;
      known.lastAt = now;
      return;
    }
    if (this.sources.size >= this.config.auditRefusalSourcesPerMinute) {
      const o = this.overflow.get(r.status);
      if (o) {
        o.count++;
        o.lastAt = now;
      } else this.overflow.set(r.status, { count: 1, firstAt: now, lastAt: now });
      return;
    }
    this.sources.set(key, { first: r, repeats: 0, firstRepeatAt: null, lastAt: null });
    void this.audit.record(this.row(r, r.requestId, { method: r.method, path: r.path }));
  }

  /** Closes the window: writes its summary rows and starts the next one. */
  async flush(): Promise<void> {
    const sources = this.sources;
    const overflow = this.overflow;
    this.sources = new Map();
    this.overflow = new Map();
    const rows: AuditRecord[] = [];
    for (const t of sources.values()) {
      if (t.repeats === 0) continue;
      // The summary stands for many requests: it names none of them (the first has its own row).
      rows.push(
        this.row(t.first, null, {
          repeats: t.repeats,
          first_at: t.firstRepeatAt!.toISOString(),
          last_at: t.lastAt!.toISOString(),
          window_seconds: REFUSAL_WINDOW_MS / 1000,
        }),
      );
    }
    for (const [status, o] of overflow) {
      rows.push({
        accountId: null,
        tokenId: null,
        actor: 'anonymous',
        action: ACTIONS[status].action,
        outcome: 'refused',
        statusCode: status,
        detail: {
          code: ACTIONS[status].code,
          sources_over_limit: true,
          repeats: o.count,
          first_at: o.firstAt.toISOString(),
          last_at: o.lastAt.toISOString(),
          window_seconds: REFUSAL_WINDOW_MS / 1000,
        },
      });
    }
    await Promise.all(rows.map((row) => this.audit.record(row)));
  }

  async onModuleDestroy(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  private row(r: Refusal, requestId: string | null, detail: Record<string, unknown>): AuditRecord {
    return {
      accountId: r.accountId,
      tokenId: r.tokenId,
      actor: r.tokenId !== null ? `token:${r.tokenId}` : 'anonymous',
      action: ACTIONS[r.status].action,
      outcome: 'refused',
      statusCode: r.status,
      ip: r.ip,
      requestId,
      detail: { code: ACTIONS[r.status].code, ...detail },
    };
  }
}

/** Hands every 401 and 403 answer, wherever in the pipeline it was made, to AuthRefusalAudit. */
@Injectable()
export class AuthRefusalMiddleware implements NestMiddleware {
  constructor(private readonly refusals: AuthRefusalAudit) {}

  use(req: Request & { user?: Principal }, res: Response, next: NextFunction): void {
    res.once('finish', () => {
      const status = res.statusCode;
      if (status !== 401 && status !== 403) return;
      const path = (req.originalUrl ?? req.url ?? '').split('?', 1)[0];
      this.refusals.note({
        status,
        ip: req.ip ? req.ip.slice(0, IP_MAX) : null,
        requestId: requestIdOf(req),
        method: req.method,
        path: path.length > PATH_MAX ? `${path.slice(0, PATH_MAX)}…` : path,
        accountId: req.user?.accountId ?? null,
        tokenId: req.user?.tokenId ?? null,
      });
    });
    next();
  }
}
