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
      await this.prisma.auditEvent.create({
        data: {
          at: this.clock.now(),
          accountId: r.accountId,
          tokenId: r.tokenId,
          actor: r.actor,
          action: r.action,
          targetType: r.targetType ?? null,
          targetId: r.targetId ?? null,
          outcome: r.outcome,
          statusCode: r.statusCode ?? null,
          ip: r.ip ?? null,
          requestId: r.requestId ?? null,
          detail: (r.detail ?? undefined) as Prisma.InputJsonValue | undefined,
        },
      });
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
