import { Controller, Get, Query, Req } from '@nestjs/common';
import type { Request } from 'express';
import { RequireScope } from '../auth/decorators';
import { buildPage, pageRequestOf } from '../common/pagination';
import { ApiDoc, ApiDocs } from '../openapi/endpoints';
import { AuditListQuery, auditEventView } from './audit-event.view';
import { AuditService } from './audit.service';

/** The audit log, newest first (admin tokens only). Filters: `account_id`, `action`. */
@ApiDocs.admin()
@Controller('api/v1/admin/audit-events')
@RequireScope('admin')
export class AuditController {
  constructor(private readonly audit: AuditService) {}

  @Get()
  @ApiDoc.audit.list()
  async list(@Req() req: Request, @Query() query: AuditListQuery) {
    const page = pageRequestOf(query);
    const { count, rows } = await this.audit.list(
      { accountId: query.account_id, action: query.action },
      page,
    );
    return buildPage(req, page, count, rows.map(auditEventView));
  }
}
