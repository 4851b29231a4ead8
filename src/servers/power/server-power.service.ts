import { Injectable } from '@nestjs/common';
import { ActionsService } from '../../actions/actions.service';
import { ActionView } from '../../actions/action.view';
import { accountScope, Principal } from '../../auth/principal';
import { ProblemException } from '../../common/problem';
import { ActionKind, ActionStatus, ServerStatus } from '../../generated/prisma/client';
import { JobQueue } from '../../jobs/job-queue';
import { PrismaService } from '../../prisma/prisma.service';
import { holdingOf, lockServerSql, refuseIfHeld } from '../server-hold';
import { POWER_ACTIONS, PowerActionType } from './power-actions';

interface PowerRow {
  node_id: number;
  server_status: ServerStatus;
  earlier_action_id: number | null;
  holding_id: number | null;
  holding_kind: ActionKind | null;
  holding_status: ActionStatus | null;
  action_id: number | null;
}

/**
 * Power actions on a server. One statement locks the server row and calls `server_power_checked`
 * (prisma/sql/functions), which applies "one long operation per server" and inserts the action only when
 * the server is free; the job is enqueued after commit (re-enqueued by the worker's dispatcher if Redis
 * was unreachable).
 */
@Injectable()
export class ServerPowerService {
  constructor(
    private readonly prisma: PrismaService,
    private readonly queue: JobQueue,
    private readonly actions: ActionsService,
  ) {}

  async request(
    me: Principal,
    serverId: number,
    type: PowerActionType,
    idempotencyKeyId?: number,
  ): Promise<ActionView> {
    const { kind } = POWER_ACTIONS[type];
    const scope = accountScope(me).accountId ?? null;
    const [r] = await this.prisma.$queryRaw<PowerRow[]>`
      SELECT v.node_id, v.status::text AS server_status, c.*
      FROM (${lockServerSql(serverId, scope)}) v
      CROSS JOIN LATERAL server_power_checked(v.id, v.account_id, v.status, ${kind}::action_kind,
        ${me.tokenId}::int, ${idempotencyKeyId ?? null}::int) c`;
    if (!r) throw new ProblemException({ status: 404, code: 'server_not_found' });
    const actionId = r.earlier_action_id ?? r.action_id;
    if (actionId === null) {
      refuseIfHeld({ id: serverId, status: r.server_status }, 'power action', holdingOf(r));
      throw new Error(`server_power_checked inserted no action for server ${serverId}`);
    }
    await this.queue.enqueueAccepted(r.node_id, actionId, kind);
    return this.actions.get(me, actionId);
  }
}
