import { Injectable } from '@nestjs/common';
import { accountScope, Principal } from '../auth/principal';
import { apiTime } from '../common/clock';
import { ProblemException } from '../common/problem';
import { PrismaService } from '../prisma/prisma.service';

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
    return {
      id: a.id,
      kind: a.kind,
      status: a.status,
      progress: a.progress,
      server: a.server,
      snapshot: a.snapshot,
      backup: a.backup,
      error: a.errorCode ? { code: a.errorCode, message: a.errorMessage } : null,
      created_at: apiTime(a.createdAt),
      started_at: apiTime(a.startedAt),
      finished_at: apiTime(a.finishedAt),
    };
  }
}
