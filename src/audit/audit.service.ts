import { Injectable, Logger } from '@nestjs/common';
import { Clock } from '../common/clock';
import { PageRequest, skipTake } from '../common/pagination';
import { Prisma } from '../generated/prisma/client';
import { PrismaService } from '../prisma/prisma.service';
import { MicroBatcher } from '../common/micro-batcher';
import { isDatabaseBusy, isDatabaseUnavailable } from '../prisma/database-errors';

/** How an audited request ended. */
export const AUDIT_OUTCOMES = ['accepted', 'refused', 'error'] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

export interface AuditRecord {
  accountId: number | null;
  tokenId: number | null;
  actor: string;
  action: string;
  targetType?: string;
  targetId?: number | null;
  outcome: AuditOutcome;
  statusCode?: number;
  ip?: string | null;
  requestId?: string | null;
  detail?: Record<string, unknown>;
}

/** The audit log: append-only; a failure to write it is logged, never turned into a failed request. */
@Injectable()
export class AuditService {
  private readonly logger = new Logger(AuditService.name);

  constructor(
    private readonly prisma: PrismaService,
    private readonly clock: Clock,
  ) {}

  /**
   * Audit events recorded in the same turn of the event loop: one INSERT for all of them; should it
   * fail, each is inserted alone and in order, so one bad row cannot lose the others. Each call gets its own error.
   */
  private readonly batcher = new MicroBatcher<AuditRecord, unknown>(
    async (rs) => {
      try {
        await this.insert(rs);
        return rs.map(() => null);
      } catch (err) {
        // A busy or unreachable database would only fail each row the same way, later (and the
        // requests waiting for their audit event would wait once per row): all fail now.
        if (rs.length === 1 || isDatabaseBusy(err) || isDatabaseUnavailable(err)) return rs.map(() => err);
        // One at a time, in the order they were recorded: ids (and so the log's order) follow the
        // events, which parallel inserts racing for the sequence would not promise.
        const errors: unknown[] = [];
        for (const r of rs) {
          const e = await this.insert([r]).then(
            () => null,
            (e: unknown) => e,
          );
          if (e && (isDatabaseBusy(e) || isDatabaseUnavailable(e))) {
            while (errors.length < rs.length) errors.push(e);
            break;
          }
          errors.push(e);
        }
        return errors;
      }
    },
    2,
    256,
  );

  async record(r: AuditRecord): Promise<void> {
    let err: unknown;
    try {
      err = await this.batcher.load(r);
    } catch (e) {
      err = e;
    }
    if (err) this.logger.error({ err, audit: r }, 'could not write audit event');
  }

  /** Plain SQL: one INSERT of every row, without a pass through the query compiler. */
  private async insert(rs: AuditRecord[]): Promise<void> {
    const at = this.clock.now().toISOString();
    const col = <T>(f: (r: AuditRecord) => T) => rs.map(f);
    await this.prisma.$executeRaw`
      INSERT INTO audit_events (at, account_id, token_id, actor, action, target_type, target_id, outcome,
                                status_code, ip, request_id, detail)
      SELECT ${at}::timestamptz, t.account_id, t.token_id, t.actor, t.action, t.target_type, t.target_id,
             t.outcome, t.status_code, t.ip, t.request_id, t.detail::jsonb
      FROM unnest(${col((r) => r.accountId)}::int[], ${col((r) => r.tokenId)}::int[],
                  ${col((r) => r.actor)}::varchar[], ${col((r) => r.action)}::varchar[],
                  ${col((r) => r.targetType ?? null)}::varchar[], ${col((r) => r.targetId ?? null)}::int[],
                  ${col((r) => r.outcome)}::varchar[], ${col((r) => r.statusCode ?? null)}::int[],
                  ${col((r) => r.ip ?? null)}::varchar[], ${col((r) => r.requestId ?? null)}::varchar[],
                  ${col((r) => (r.detail === undefined ? null : JSON.stringify(r.detail)))}::text[])
           WITH ORDINALITY AS t(account_id, token_id, actor, action, target_type, target_id, outcome,
                                status_code, ip, request_id, detail, ord)
      ORDER BY t.ord`;
  }

  async list(filter: { accountId?: number; action?: string }, page: PageRequest) {
    const where: Prisma.AuditEventWhereInput = {
      ...(filter.accountId !== undefined ? { accountId: filter.accountId } : {}),
      ...(filter.action !== undefined ? { action: filter.action } : {}),
    };
    const [count, rows] = await Promise.all([
      this.prisma.auditEvent.count({ where }),
      this.prisma.auditEvent.findMany({
        where,
        orderBy: [{ at: 'desc' }, { id: 'desc' }],
        ...skipTake(page),
      }),
    ]);
    return { count, rows };
  }
}
