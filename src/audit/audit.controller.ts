import { Controller, Get, Query, Req } from '@nestjs/common';
import type { Request } from 'express';
import { RequireScope } from '../auth/decorators';
import { apiTime } from '../common/clock';
import { parseId } from '../common/ids';
import { buildPage, readPageRequest } from '../common/pagination';
import { problems } from '../common/problem';
import { AppConfig } from '../config/app-config';
import { ApiDoc, ApiDocs } from '../openapi/endpoints';
import { AuditService } from './audit.service';

/** The audit log, newest first (admin tokens only). Filters: `account_id`, `action`. */
@ApiDocs.admin()
@Controller('api/v1/admin/audit-events')
@RequireScope('admin')
export class AuditController {
  constructor(
    private readonly audit: AuditService,
    private readonly config: AppConfig,
  ) {}

  @Get()
  @ApiDoc.audit.list()
  async list(@Req() req: Request, @Query() query: Record<string, unknown>) {
    let accountId: number | undefined;
    if (query.account_id !== undefined) {
      const id = parseId(query.account_id);
      if (id === null)
        throw problems.validation([
          { field: 'account_id', message: 'account_id must be a positive integer' },
        ]);
      accountId = id;
    }
    const action =
      typeof query.action === 'string' && /^[a-z._]{1,64}$/.test(query.action) ? query.action : undefined;
    if (query.action !== undefined && action === undefined) {
      throw problems.validation([
        { field: 'action', message: 'action must be an audit action such as snapshot.create' },
      ]);
    }
    const page = readPageRequest(query, this.config);
    const { count, rows } = await this.audit.list({ accountId, action }, page);
    return buildPage(
      req,
      page,
      count,
      rows.map((e) => ({
        id: e.id,
        at: apiTime(e.at),
        account_id: e.accountId,
        token_id: e.tokenId,
        actor: e.actor,
        action: e.action,
        target: e.targetType ? { type: e.targetType, id: e.targetId } : null,
        outcome: e.outcome,
        status_code: e.statusCode,
        ip: e.ip,
        request_id: e.requestId,
        detail: e.detail,
      })),
    );
  }
}
