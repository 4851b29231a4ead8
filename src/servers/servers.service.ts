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
import { ReadStatements } from '../prisma/read-statements';
import { ActionKind, ActionStatus, ServerStatus } from '../generated/prisma/client';
import { BACKGROUND_KINDS } from './server-hold';
import { labelFilterOf } from '../labels/label-selector';
import { Labels } from '../labels/labels';
import { Clock } from '../common/clock';
import { decideSlot, scheduleOf } from '../backup-schedule/schedule';
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
  backupPolicy: {
    enabled: boolean;
    nextRunAt: Date | null;
    lastRun: {
      slotAt: Date;
      ranAt: Date;
      late: boolean;
      /** The run's outcome: a skip, or (once started) its backup's status. */
      outcome: string;
      backupId: number | null;
    } | null;
  };
  currentAction: { id: number; kind: ActionKind; status: ActionStatus; progress: number } | null;
  /** As stored (a jsonb object). */
  labels: unknown;
}

/** A row of the summaries statement (columns null on the one row of an empty page). */
interface SummaryRow {
  total: number;
  id: number | null;
  name: string | null;
  status: ServerStatus | null;
  created_at: Date | null;
  used: number | null;
  backups_used: number | null;
  policy_enabled: boolean | null;
  policy_frequency: 'daily' | 'weekly' | null;
  policy_weekday: number | null;
  policy_hour: number | null;
  policy_since: Date | null;
  run_slot_at: Date | null;
  run_ran_at: Date | null;
  run_late: boolean | null;
  run_outcome: string | null;
  run_backup_id: number | null;
  run_backup_status: string | null;
  action_id: number | null;
  action_kind: ActionKind | null;
  action_status: ActionStatus | null;
  action_progress: number | null;
  labels: unknown;
}

/** Constant names as an SQL list of literals (this file's own constants, never input). */
const sqlList = (names: readonly string[]) => names.map((n) => `'${n}'`).join(', ');

@Injectable()
export class ServersService {
  constructor(
    private readonly prisma: PrismaService,
    private readonly config: AppConfig,
    private readonly reads: ReadStatements,
    private readonly clock: Clock,
  ) {}

  async list(
    me: Principal,
    page: PageRequest,
    labelSelector?: string,
  ): Promise<{ count: number; rows: ServerSummary[] }> {
    const { skip, take } = skipTake(page);
    const accountId = accountScope(me).accountId;
    const labels = labelFilterOf(labelSelector);
    // A statement of its own with a selector: its plan can use the labels' GIN index.
    const [name, matchLabels] = labels === null ? ['', ''] : ['-labelled', ' AND labels @@ $6::jsonpath'];
    const rows = await this.summaries(
      (accountId === undefined ? 'servers-all' : 'servers-of-account') + name,
      (accountId === undefined ? '$5::int IS NULL' : 'account_id = $5::int') + matchLabels,
      [take, skip, accountId ?? null, ...(labels === null ? [] : [labels])],
    );
    return { count: rows[0]?.total ?? 0, rows: this.present(rows) };
  }

  /** The server if `me` may see it; otherwise (absent, or another account's) 404. */
  async get(me: Principal, id: number): Promise<ServerSummary> {
    const rows = await this.summaries(
      'server-by-id',
      'id = $5::int AND ($6::int IS NULL OR account_id = $6::int)',
      [1, 0, id, accountScope(me).accountId ?? null],
    );
    const [summary] = this.present(rows);
    if (!summary) throw new ProblemException({ status: 404, code: 'server_not_found' });
    return summary;
  }

  /** Replaces the labels of a server `me` may see (the DTO checked them) and answers it as it now is. */
  async setLabels(me: Principal, id: number, labels: Labels): Promise<ServerSummary> {
    const { count } = await this.prisma.server.updateMany({
      where: { id, ...accountScope(me) },
      data: { labels },
    });
    if (count === 0) throw new ProblemException({ status: 404, code: 'server_not_found' });
    return this.get(me, id);
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

  /**
   * Servers matching `filter` (ordered by id, `$3` of them from `$4`), each with the snapshots holding
   * one of its slots and the action holding it — an open create or restore before a background delete —
   * in one prepared statement; the count of all matching servers on every row, and one row with no
   * server when the page is empty.
   */
  private summaries(name: string, filter: string, values: unknown[]): Promise<SummaryRow[]> {
    return this.reads.rows<SummaryRow>(
      name,
      // The page read straight from the (account_id, id) index and the count from the same index
      // alone: materialising every matching row first cost a sort of all of them per request.
      `WITH page AS (SELECT id, name, status, created_at, labels FROM servers WHERE ${filter} ORDER BY id LIMIT $3 OFFSET $4)
       SELECT (SELECT count(*) FROM servers WHERE ${filter})::int AS total, p.id, p.name, p.status, p.created_at, p.labels,
         (SELECT count(*) FROM snapshots sn WHERE sn.server_id = p.id AND sn.deleted_at IS NULL
            AND sn.kind = 'manual' AND sn.status = ANY($1::snapshot_status[]))::int AS used,
         (SELECT count(*) FROM backups b WHERE b.server_id = p.id AND b.deleted_at IS NULL
            AND b.kind = 'manual' AND b.status::text IN (${sqlList(BACKUP_SLOT_STATUSES)}))::int AS backups_used,
         bp.enabled AS policy_enabled, bp.frequency::text AS policy_frequency, bp.weekday AS policy_weekday,
         bp.hour AS policy_hour, bp.schedule_since AS policy_since,
         lr.slot_at AS run_slot_at, lr.ran_at AS run_ran_at, lr.late AS run_late, lr.outcome AS run_outcome,
         lr.backup_id AS run_backup_id, lb.status::text AS run_backup_status,
         a.id AS action_id, a.kind AS action_kind, a.status AS action_status, a.progress AS action_progress
       FROM (SELECT 1) one LEFT JOIN page p ON true
       LEFT JOIN backup_policies bp ON bp.server_id = p.id
       LEFT JOIN LATERAL (SELECT * FROM backup_runs r WHERE r.server_id = p.id ORDER BY r.slot_at DESC LIMIT 1) lr ON true
       LEFT JOIN backups lb ON lb.id = lr.backup_id
       LEFT JOIN LATERAL (SELECT id, kind, status, progress FROM actions
         WHERE server_id = p.id AND status = ANY($2::action_status[])
         ORDER BY kind::text IN (${sqlList(BACKGROUND_KINDS)}), id LIMIT 1) a ON true
       ORDER BY p.id`,
      [SLOT_STATUSES, OPEN_ACTION_STATUSES, ...values],
    );
  }

  /** The policy at a glance: its next slot (src/backup-schedule/schedule.ts) and its last run. */
  private policySummary(r: SummaryRow & { id: number }): ServerSummary['backupPolicy'] {
    const enabled = r.policy_enabled === true;
    const lastRun =
      r.run_slot_at === null
        ? null
        : {
            slotAt: r.run_slot_at,
            ranAt: r.run_ran_at!,
            late: r.run_late!,
            outcome: r.run_outcome === 'started' ? r.run_backup_status! : r.run_outcome!,
            backupId: r.run_backup_id,
          };
    const nextRunAt = enabled
      ? decideSlot(
          scheduleOf(
            { frequency: r.policy_frequency!, weekday: r.policy_weekday, hour: r.policy_hour! },
            this.config.backupWindowMinutes,
          ),
          r.id,
          this.clock.now(),
          r.run_slot_at,
          r.policy_since!,
        ).nextRunAt
      : null;
    return { enabled, nextRunAt, lastRun };
  }

  private present(rows: SummaryRow[]): ServerSummary[] {
    return rows
      .filter((r): r is SummaryRow & { id: number } => r.id !== null)
      .map((r) => ({
        id: r.id,
        name: r.name!,
        status: r.status!,
        createdAt: r.created_at!,
        snapshotQuota: { limit: this.config.snapshotLimitPerServer, used: r.used! },
        backupQuota: { limit: this.config.backupLimitPerServer, used: r.backups_used! },
        backupPolicy: this.policySummary(r),
        currentAction:
          r.action_id === null
            ? null
            : {
                id: r.action_id,
                kind: r.action_kind!,
                status: r.action_status!,
                progress: r.action_progress!,
              },
        labels: r.labels,
      }));
  }
}
