import { Injectable } from '@nestjs/common';
import { accountScope, Principal } from '../auth/principal';
import { AppConfig } from '../config/app-config';
import { PageRequest, skipTake } from '../common/pagination';
import { FieldError, ProblemException, problems } from '../common/problem';
import { diskPathProblem } from '../hypervisor/host-paths';
import {
  canonicalDomainUuid,
  DOMAIN_UUID_MESSAGE,
  domainNameProblem,
} from '../hypervisor/libvirt/domain-identity';
import { isUniqueViolation } from '../prisma/database-errors';
import { PrismaService } from '../prisma/prisma.service';
import { ActionKind, ActionStatus, ServerStatus } from '../generated/prisma/client';
import { BACKGROUND_KINDS } from './server-hold';
import { SERVER_NAME, SERVER_NAME_MESSAGE } from './dto/create-server.dto';

/** Snapshot statuses that occupy one of a server's slots (failed ones do not). */
export const SLOT_STATUSES = ['in_progress', 'completed'] as const;
/** Backup statuses that occupy one of a server's manual slots (failed ones do not). */
export const BACKUP_SLOT_STATUSES = ['in_progress', 'completed', 'corrupt'] as const;
export const OPEN_ACTION_STATUSES: ActionStatus[] = ['pending', 'running'];

export interface ServerSummary {
  id: number;
  name: string;
  status: ServerStatus;
  createdAt: Date;
  snapshotQuota: { limit: number; used: number };
  backupQuota: { limit: number; used: number };
  backupPolicyEnabled: boolean;
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

  /**
   * Registers a server (admin API and CLI alike). Every problem with the input is one 400 naming its
   * fields: a name, a domain name virsh cannot mistake for an id or a UUID, a well-formed domain UUID
   * when one is given, a disk inside one of the node's image roots. The node's other servers must not
   * have the domain, its UUID or the disk (409). Without a UUID, `resolveDomainUuid` (the CLI reaching
   * the node's libvirt) is asked for it once the input is known to be good; without either, the worker
   * pins it before the server's first operation.
   */
  async create(input: {
    accountId: number;
    nodeId: number;
    name: string;
    domain: string;
    domainUuid?: string;
    diskPath: string;
    status?: 'running' | 'stopped';
    resolveDomainUuid?: () => Promise<string>;
  }) {
    const errors: FieldError[] = [];
    if (!SERVER_NAME.test(input.name)) errors.push({ field: 'name', message: SERVER_NAME_MESSAGE });
    const domainProblem = domainNameProblem(input.domain);
    if (domainProblem) errors.push({ field: 'domain', message: domainProblem });
    const givenUuid = input.domainUuid === undefined ? null : canonicalDomainUuid(input.domainUuid);
    if (input.domainUuid !== undefined && givenUuid === null)
      errors.push({ field: 'domain_uuid', message: DOMAIN_UUID_MESSAGE });
    if (errors.length) throw problems.validation(errors);
    const [account, node] = await Promise.all([
      this.prisma.account.findUnique({ where: { id: input.accountId }, select: { id: true } }),
      this.prisma.node.findUnique({ where: { id: input.nodeId }, select: { id: true, imageRoots: true } }),
    ]);
    if (!account) throw new ProblemException({ status: 404, code: 'account_not_found' });
    if (!node) throw new ProblemException({ status: 404, code: 'node_not_found' });
    const diskProblem = diskPathProblem(input.diskPath, node.imageRoots);
    if (diskProblem) throw problems.validation([{ field: 'disk_path', message: diskProblem }]);
    await this.refuseTaken(input.nodeId, { domain: input.domain, diskPath: input.diskPath });
    const domainUuid = givenUuid ?? (input.resolveDomainUuid ? await input.resolveDomainUuid() : null);
    if (domainUuid !== null) await this.refuseTaken(input.nodeId, { domainUuid });
    try {
      return await this.prisma.server.create({
        data: {
          accountId: input.accountId,
          nodeId: input.nodeId,
          name: input.name,
          domain: input.domain,
          domainUuid,
          diskPath: input.diskPath,
          status: input.status ?? 'running',
        },
      });
    } catch (e) {
      // Registered by someone else between the check and the insert: the same answer as the check's.
      if (isUniqueViolation(e)) {
        await this.refuseTaken(input.nodeId, { domain: input.domain, diskPath: input.diskPath, domainUuid });
      }
      throw e;
    }
  }

  /** 400 for a domain name virsh could read as a domain id or UUID (or not a libvirt name at all). */
  checkDomainName(domain: string): void {
    const problem = domainNameProblem(domain);
    if (problem) throw problems.validation([{ field: 'domain', message: problem }]);
  }

  /** 409 when another server of the node has this domain, domain UUID or disk. */
  private async refuseTaken(
    nodeId: number,
    what: { domain?: string; domainUuid?: string | null; diskPath?: string },
  ): Promise<void> {
    const checks = [
      { key: 'domain', value: what.domain, where: { domain: what.domain } },
      { key: 'domain UUID', value: what.domainUuid, where: { domainUuid: what.domainUuid } },
      { key: 'disk', value: what.diskPath, where: { diskPath: what.diskPath } },
    ] as const;
    for (const c of checks) {
      if (c.value === undefined || c.value === null) continue;
      const taken = await this.prisma.server.findFirst({
        where: { nodeId, ...c.where },
        select: { id: true },
      });
      if (taken) {
        throw new ProblemException({
          status: 409,
          code: 'conflict',
          params: { what: `${c.key} "${c.value}" is already registered on this node as server ${taken.id}` },
        });
      }
    }
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
    const [used, open, backupsUsed, policies] = await Promise.all([
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
      this.prisma.backup.groupBy({
        by: ['serverId'],
        where: {
          serverId: { in: ids },
          deletedAt: null,
          kind: 'manual',
          status: { in: [...BACKUP_SLOT_STATUSES] },
        },
        _count: { _all: true },
      }),
      this.prisma.backupPolicy.findMany({
        where: { serverId: { in: ids }, enabled: true },
        select: { serverId: true },
      }),
    ]);
    const backupsUsedBy = new Map(backupsUsed.map((u) => [u.serverId, u._count._all]));
    const enabled = new Set(policies.map((p) => p.serverId));
    const usedBy = new Map(used.map((u) => [u.serverId, u._count._all]));
    const actionBy = new Map<number, (typeof open)[number]>();
    for (const a of open) {
      // Prefer a create/restore (which holds the server) over a background delete.
      const held = actionBy.get(a.serverId);
      if (!held || (BACKGROUND_KINDS.includes(held.kind) && !BACKGROUND_KINDS.includes(a.kind)))
        actionBy.set(a.serverId, a);
    }
    return rows.map((r) => {
      const a = actionBy.get(r.id);
      return {
        ...r,
        snapshotQuota: { limit: this.config.snapshotLimitPerServer, used: usedBy.get(r.id) ?? 0 },
        backupQuota: { limit: this.config.backupLimitPerServer, used: backupsUsedBy.get(r.id) ?? 0 },
        backupPolicyEnabled: enabled.has(r.id),
        currentAction: a ? { id: a.id, kind: a.kind, status: a.status, progress: a.progress } : null,
      };
    });
  }
}
