import { Injectable } from '@nestjs/common';
import { accountScope, Principal } from '../auth/principal';
import { AppConfig } from '../config/app-config';
import { PageRequest, skipTake } from '../common/pagination';
import { ProblemException } from '../common/problem';
import { PrismaService } from '../prisma/prisma.service';
import { ActionKind, ActionStatus, ServerStatus } from '../generated/prisma/client';
import { SERVER_NAME } from './dto/create-server.dto';

/** Snapshot statuses that occupy one of a server's slots (failed ones do not). */
export const SLOT_STATUSES = ['in_progress', 'completed'] as const;
export const OPEN_ACTION_STATUSES: ActionStatus[] = ['pending', 'running'];

export interface ServerSummary {
  id: number;
  name: string;
  status: ServerStatus;
  createdAt: Date;
  snapshotQuota: { limit: number; used: number };
  currentAction: { id: number; kind: ActionKind; status: ActionStatus; progress: number } | null;
}

const SERVER_COLUMNS = { id: true, name: true, status: true, createdAt: true } as const;

@Injectable()
export class ServersService {
  constructor(
    private readonly prisma: PrismaService,
    private readonly config: AppConfig,
  ) {}

  async list(me: Principal, page: PageRequest): Promise<{ count: number; rows: ServerSummary[] }> {
    const where = accountScope(me);
    const [count, rows] = await Promise.all([
      this.prisma.server.count({ where }),
      this.prisma.server.findMany({
        where,
        orderBy: { id: 'asc' },
        ...skipTake(page),
        select: SERVER_COLUMNS,
      }),
    ]);
    return { count, rows: await this.summarise(rows) };
  }

  /** The server if `me` may see it; otherwise (absent, or another account's) 404. */
  async get(me: Principal, id: number): Promise<ServerSummary> {
    const row = await this.prisma.server.findFirst({
      where: { id, ...accountScope(me) },
      select: SERVER_COLUMNS,
    });
    if (!row) throw new ProblemException({ status: 404, code: 'server_not_found' });
    const [summary] = await this.summarise([row]);
    return summary;
  }

  async create(input: {
    accountId: number;
    nodeId: number;
    name: string;
    domain: string;
    diskPath: string;
    status?: 'running' | 'stopped';
  }) {
    if (!SERVER_NAME.test(input.name)) {
      throw new ProblemException({
        status: 400,
        code: 'validation_failed',
        errors: [{ field: 'name', message: 'name must be 1-64 letters, digits, ".", "_" or "-"' }],
      });
    }
    const [account, node] = await Promise.all([
      this.prisma.account.findUnique({ where: { id: input.accountId }, select: { id: true } }),
      this.prisma.node.findUnique({ where: { id: input.nodeId }, select: { id: true } }),
    ]);
    if (!account) throw new ProblemException({ status: 404, code: 'account_not_found' });
    if (!node) throw new ProblemException({ status: 404, code: 'node_not_found' });
    const taken = await this.prisma.server.findFirst({
      where: { nodeId: input.nodeId, domain: input.domain },
    });
    if (taken) {
      throw new ProblemException({
        status: 409,
        code: 'conflict',
        params: { what: `domain "${input.domain}" is already registered on this node as server ${taken.id}` },
      });
    }
    return this.prisma.server.create({
      data: {
        accountId: input.accountId,
        nodeId: input.nodeId,
        name: input.name,
        domain: input.domain,
        diskPath: input.diskPath,
        status: input.status ?? 'running',
      },
    });
  }

  findByDomain(nodeId: number, domain: string) {
    return this.prisma.server.findUnique({ where: { nodeId_domain: { nodeId, domain } } });
  }

  /** Admin listing with platform details, for the operator CLI. */
  listAll() {
    return this.prisma.server.findMany({
      orderBy: { id: 'asc' },
      include: { account: { select: { name: true } }, node: { select: { name: true } } },
    });
  }

  private async summarise(rows: { id: number; name: string; status: ServerStatus; createdAt: Date }[]) {
    if (rows.length === 0) return [];
    const ids = rows.map((r) => r.id);
    const [used, open] = await Promise.all([
      this.prisma.snapshot.groupBy({
        by: ['serverId'],
        where: { serverId: { in: ids }, deletedAt: null, status: { in: [...SLOT_STATUSES] } },
        _count: { _all: true },
      }),
      this.prisma.action.findMany({
        where: { serverId: { in: ids }, status: { in: OPEN_ACTION_STATUSES } },
        orderBy: { id: 'asc' },
        select: { id: true, serverId: true, kind: true, status: true, progress: true },
      }),
    ]);
    const usedBy = new Map(used.map((u) => [u.serverId, u._count._all]));
    const actionBy = new Map<number, (typeof open)[number]>();
    for (const a of open) {
      // Prefer a create/restore (which holds the server) over a background delete.
      const held = actionBy.get(a.serverId);
      if (!held || (held.kind === 'delete_snapshot' && a.kind !== 'delete_snapshot'))
        actionBy.set(a.serverId, a);
    }
    return rows.map((r) => {
      const a = actionBy.get(r.id);
      return {
        ...r,
        snapshotQuota: { limit: this.config.snapshotLimitPerServer, used: usedBy.get(r.id) ?? 0 },
        currentAction: a ? { id: a.id, kind: a.kind, status: a.status, progress: a.progress } : null,
      };
    });
  }
}
