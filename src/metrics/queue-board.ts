import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { NextFunction, Request, Response } from 'express';
import { ApiTokenService } from '../auth/api-token.service';
import { isAdmin } from '../auth/principal';
import { looksLikeToken } from '../auth/token-codec';
import { ProblemException } from '../common/problem';
import { sendProblem } from '../common/problem-details.filter';
import { JobQueue, nodeQueueName } from '../jobs/job-queue';
import { PrismaService } from '../prisma/prisma.service';
import { credentialOf } from './metrics-access';

export const QUEUE_BOARD_PATH = '/admin/queues';
const NODES_REFRESH_MS = 10_000;

/**
 * The BullMQ dashboard (bull-board) at /admin/queues, for admin tokens only, read-only.
 *
 * Browsers cannot add a bearer header to the dashboard's own requests, so the admin token is also
 * accepted as the password of HTTP Basic authentication (any user name): the browser asks once and
 * repeats it. Read-only, because the truth of every operation is its action row in Postgres: retrying,
 * promoting or removing jobs by hand would bypass the action's state machine (the worker's conditional
 * updates make it harmless, but not meaningful); operators act through the API and the CLI.
 * Queues follow the nodes table (one `node-<id>` queue per hypervisor node), refreshed every 10 s.
 */
@Injectable()
export class QueueBoard implements OnModuleInit {
  private readonly logger = new Logger(QueueBoard.name);
  private readonly serverAdapter = new ExpressAdapter().setBasePath(QUEUE_BOARD_PATH);
  private board?: ReturnType<typeof createBullBoard>;
  private refreshedAt = 0;

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly tokens: ApiTokenService,
    private readonly prisma: PrismaService,
    private readonly queue: JobQueue,
  ) {}

  /** Runs after Nest registered its routes and before its 404 handler: mount the dashboard there. */
  onModuleInit(): void {
    const http = this.adapterHost.httpAdapter;
    if (!http || http.getType() !== 'express') return;
    this.board = createBullBoard({
      queues: [],
      serverAdapter: this.serverAdapter,
      options: { uiConfig: { boardTitle: 'admin.vps.org queues' } },
    });
    http.use(
      QUEUE_BOARD_PATH,
      (req: Request, res: Response, next: NextFunction) => void this.guard(req, res, next),
      this.serverAdapter.getRouter(),
    );
  }

  private async guard(req: Request, res: Response, next: NextFunction): Promise<void> {
    try {
      const credential = credentialOf(req.headers.authorization);
      const principal =
        credential && looksLikeToken(credential) ? await this.tokens.authenticate(credential) : null;
      if (!principal) {
        return sendProblem(
          req,
          res,
          new ProblemException({
            status: 401,
            code: 'unauthorized',
            headers: {
              'WWW-Authenticate':
                'Basic realm="admin.vps.org queues (admin token as password)", charset="UTF-8"',
            },
          }),
        );
      }
      if (!isAdmin(principal)) {
        return sendProblem(
          req,
          res,
          new ProblemException({ status: 403, code: 'forbidden', params: { scope: 'admin' } }),
        );
      }
      res.setHeader('Cache-Control', 'no-store');
      await this.refreshQueues();
      next();
    } catch (err) {
      next(err);
    }
  }

  private async refreshQueues(): Promise<void> {
    if (!this.board || Date.now() - this.refreshedAt < NODES_REFRESH_MS) return;
    const nodes = await this.prisma.node.findMany({
      select: { id: true, name: true },
      orderBy: { id: 'asc' },
    });
    this.board.replaceQueues(
      nodes.map(
        (n) =>
          new BullMQAdapter(this.queue.queueFor(n.id), {
            readOnlyMode: true,
            displayName: `${nodeQueueName(n.id)} (${n.name})`,
            description: `Jobs of hypervisor node ${n.name}`,
          }),
      ),
    );
    this.refreshedAt = Date.now();
    this.logger.debug({ queues: nodes.length }, 'queue dashboard refreshed');
  }
}
