import { Injectable } from '@nestjs/common';
import { accountScope, Principal } from '../auth/principal';
import { ProblemException } from '../common/problem';
import { ActionReads } from './action-reads';
import { actionView, ActionView } from './action.view';

@Injectable()
export class ActionsService {
  constructor(private readonly actions: ActionReads) {}

  /** What `vps --wait` polls: one prepared statement. */
  async get(me: Principal, id: number): Promise<ActionView> {
    const a = await this.actions.byId(id, accountScope(me).accountId ?? null);
    if (!a) throw new ProblemException({ status: 404, code: 'action_not_found' });
    return actionView(a);
  }
}
