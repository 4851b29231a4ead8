import { Injectable } from '@nestjs/common';
import { accountScope, Principal } from '../auth/principal';
import { Clock } from '../common/clock';
import { ProblemException } from '../common/problem';
import { ActionReads } from '../actions/action-reads';
import { ActionsService } from '../actions/actions.service';
import { ActionView } from '../actions/action.view';
import { BackupsService } from '../backups/backups.service';
import { SnapshotsService } from '../snapshots/snapshots.service';
import { notUndoable, NotUndoableReason } from './safety-copy';

function notUndoableProblem(actionId: number, reason: NotUndoableReason): ProblemException {
  return new ProblemException({
    status: 400,
    code: 'action_not_undoable',
    params: { action_id: actionId, reason },
    extra: { action_id: actionId, reason },
  });
}

/**
 * Undo of a restore: a restore of the restore's safety copy onto its server, through the restore rules
 * of snapshots or backups (one operation per server, the Idempotency-Key linked to the new action), so
 * it is itself a restore that takes a safety copy.
 */
@Injectable()
export class RestoreUndoService {
  constructor(
    private readonly actions: ActionReads,
    private readonly views: ActionsService,
    private readonly snapshots: SnapshotsService,
    private readonly backups: BackupsService,
    private readonly clock: Clock,
  ) {}

  async undo(me: Principal, actionId: number, idempotencyKeyId?: number): Promise<ActionView> {
    const a = await this.actions.byId(actionId, accountScope(me).accountId ?? null);
    if (!a) throw new ProblemException({ status: 404, code: 'action_not_found' });
    const reason = notUndoable(a, this.clock.now());
    if (reason) throw notUndoableProblem(actionId, reason);
    const copy = a.safetyCopy!;
    let started: { actionId: number };
    try {
      started =
        copy.type === 'snapshot'
          ? await this.snapshots.restore(me, copy.id, idempotencyKeyId)
          : await this.backups.restore(me, copy.id, a.server.id, idempotencyKeyId);
    } catch (e) {
      // The sweeper removed the copy since it was read.
      const code = e instanceof ProblemException ? e.spec.code : null;
      if (code === 'snapshot_not_found' || code === 'backup_not_found') {
        throw notUndoableProblem(actionId, 'expired');
      }
      throw e;
    }
    return this.views.get(me, started.actionId);
  }
}
