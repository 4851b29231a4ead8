import { Injectable, Logger } from '@nestjs/common';
import { Clock } from '../common/clock';
import { PageRequest, skipTake } from '../common/pagination';
import { Prisma } from '../generated/prisma/client';
import { PrismaService } from '../prisma/prisma.service';

export interface AuditRecord {
  accountId: number | null;
  tokenId: number | null;
  actor: string;
  action: string;
  targetType?: string;
  targetId?: number | null;
  outcome: 'accepted' | 'refused' | 'error';
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

  async record(r: AuditRecord): Promise<void> {
    try {
      // Plain SQL: one INSERT, without a pass through the query compiler on every audited request.
      const detail = r.detail === undefined ? null : JSON.stringify(r.detail);
      await this.prisma.$executeRaw`
        INSERT INTO audit_events (at, account_id, token_id, actor, action, target_type, target_id, outcome,
                                  status_code, ip, request_id, detail)
        VALUES (${this.clock.now()}::timestamptz, ${r.accountId}::int, ${r.tokenId}::int, ${r.actor}::varchar,
                ${r.action}::varchar, ${r.targetType ?? null}::varchar, ${r.targetId ?? null}::int,
                ${r.outcome}::varchar, ${r.statusCode ?? null}::int, ${r.ip ?? null}::varchar,
                ${r.requestId ?? null}::varchar, ${detail}::jsonb)`;
    } catch (err) {
      this.logger.error({ err, audit: r }, 'could not write audit event');
    }
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
