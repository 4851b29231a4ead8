import { Body, Controller, Get, Param, Patch, Post, Query, Req, UseInterceptors } from '@nestjs/common';
import { Audit, AuditInterceptor } from '../audit/audit.interceptor';
import type { Request } from 'express';
import { ApiDoc, ApiDocs } from '../openapi/endpoints';
import { CurrentPrincipal, RequireScope } from '../auth/decorators';
import { Principal } from '../auth/principal';
import { PathIdPipe } from '../common/ids';
import { buildPage, pageRequestOf } from '../common/pagination';
import { UpdateLabelsDto } from '../labels/update-labels.dto';
import { labelsAuditDetail } from '../labels/labels';
import { ServerListQuery } from './server-list-params';
import { CreateServerDto } from './dto/create-server.dto';
import { adminServerView, serverView } from './server.view';
import { ServersService } from './servers.service';

@ApiDocs.servers()
@Controller('api/v1/servers')
export class ServersController {
  constructor(private readonly servers: ServersService) {}

  @Get()
  @ApiDoc.servers.list()
  async list(@CurrentPrincipal() me: Principal, @Req() req: Request, @Query() query: ServerListQuery) {
    const page = pageRequestOf(query);
    const { count, rows } = await this.servers.list(me, page, query.label_selector);
    return buildPage(req, page, count, rows.map(serverView));
  }

  @Get(':id')
  @ApiDoc.servers.get()
  async get(@CurrentPrincipal() me: Principal, @Param('id', new PathIdPipe('server_not_found')) id: number) {
    return serverView(await this.servers.get(me, id));
  }

  @Patch(':id')
  @ApiDoc.servers.update()
  @Audit('server.update', 'server', { detailOf: labelsAuditDetail })
  @UseInterceptors(AuditInterceptor)
  async update(
    @CurrentPrincipal() me: Principal,
    @Param('id', new PathIdPipe('server_not_found')) id: number,
    @Body() dto: UpdateLabelsDto,
  ) {
    return serverView(await this.servers.setLabels(me, id, dto.labels));
  }
}

/** Operators register servers (admin tokens only). */
@ApiDocs.admin()
@Controller('api/v1/admin/servers')
@RequireScope('admin')
@UseInterceptors(AuditInterceptor)
export class AdminServersController {
  constructor(private readonly servers: ServersService) {}

  @Post()
  @ApiDoc.servers.adminCreate()
  @Audit('server.create', 'server', {
    bodyFields: ['account_id', 'node_id', 'name', 'domain', 'domain_uuid', 'disk_path', 'status'],
  })
  async create(@Body() dto: CreateServerDto) {
    const s = await this.servers.create({
      accountId: dto.account_id,
      nodeId: dto.node_id,
      name: dto.name,
      domain: dto.domain,
      domainUuid: dto.domain_uuid,
      diskPath: dto.disk_path,
      status: dto.status,
    });
    return adminServerView(s);
  }
}
