import { Body, Controller, Get, Param, Post, Query, Req, UseInterceptors } from '@nestjs/common';
import { Audit, AuditInterceptor } from '../audit/audit.interceptor';
import type { Request } from 'express';
import { ApiDoc, ApiDocs } from '../openapi/endpoints';
import { CurrentPrincipal, RequireScope } from '../auth/decorators';
import { Principal } from '../auth/principal';
import { AppConfig } from '../config/app-config';
import { apiTime } from '../common/clock';
import { PathIdPipe } from '../common/ids';
import { buildPage, readPageRequest } from '../common/pagination';
import { CreateServerDto } from './dto/create-server.dto';
import { serverView } from './server.view';
import { ServersService } from './servers.service';

@ApiDocs.servers()
@Controller('api/v1/servers')
export class ServersController {
  constructor(
    private readonly servers: ServersService,
    private readonly config: AppConfig,
  ) {}

  @Get()
  @ApiDoc.servers.list()
  async list(
    @CurrentPrincipal() me: Principal,
    @Req() req: Request,
    @Query() query: Record<string, unknown>,
  ) {
    const page = readPageRequest(query, this.config);
    const { count, rows } = await this.servers.list(me, page);
    return buildPage(req, page, count, rows.map(serverView));
  }

  @Get(':id')
  @ApiDoc.servers.get()
  async get(@CurrentPrincipal() me: Principal, @Param('id', new PathIdPipe('server_not_found')) id: number) {
    return serverView(await this.servers.get(me, id));
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
    return {
      id: s.id,
      account_id: s.accountId,
      node_id: s.nodeId,
      name: s.name,
      status: s.status,
      domain: s.domain,
      domain_uuid: s.domainUuid,
      disk_path: s.diskPath,
      created_at: apiTime(s.createdAt),
    };
  }
}
