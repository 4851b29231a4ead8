import { Injectable } from '@nestjs/common';
import { accountScope, Principal } from '../auth/principal';
import { ProblemException } from '../common/problem';
import { PrismaService } from '../prisma/prisma.service';
import { actionView } from './action.view';

@Injectable()
export class ActionsService {
  constructor(private readonly prisma: PrismaService) {}

  async get(me: Principal, id: number) {
    const a = await this.prisma.action.findFirst({
      where: { id, ...accountScope(me) },
      select: {
        id: true,
        kind: true,
        status: true,
        progress: true,
        errorCode: true,
        errorMessage: true,
        createdAt: true,
        startedAt: true,
        finishedAt: true,
        server: { select: { id: true, name: true } },
        snapshot: { select: { id: true, name: true } },
        backup: { select: { id: true, name: true } },
      },
    });
    if (!a) throw new ProblemException({ status: 404, code: 'action_not_found' });
    return actionView(a);
  }
}
