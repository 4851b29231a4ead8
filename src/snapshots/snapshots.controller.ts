import {
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  Param,
  Post,
  Query,
  Req,
  UseInterceptors,
} from '@nestjs/common';
import type { Request } from 'express';
import { ApiDoc, ApiDocs } from '../openapi/endpoints';
import { CurrentPrincipal } from '../auth/decorators';
import { Principal } from '../auth/principal';
import { apiTime } from '../common/clock';
import { PathIdPipe } from '../common/ids';
import { languageOf, message } from '../common/messages';
import { buildPage, readPageRequest } from '../common/pagination';
import { readListQuery } from '../common/list-query';
import { Audit, AuditInterceptor } from '../audit/audit.interceptor';
import { AppConfig } from '../config/app-config';
import { IdempotencyInterceptor, IdempotencyKeyId } from '../idempotency/idempotency.interceptor';
import { CreateSnapshotDto } from './dto/create-snapshot.dto';
import { snapshotView } from './snapshot.view';
import { SnapshotsService } from './snapshots.service';

const SnapshotId = () => new PathIdPipe('snapshot_not_found');

@ApiDocs.snapshots()
@Controller('api/v1/snapshots')
@UseInterceptors(AuditInterceptor)
export class SnapshotsController {
  constructor(
    private readonly snapshots: SnapshotsService,
    private readonly config: AppConfig,
  ) {}

  @Get()
  @ApiDoc.snapshots.list()
  async list(
    @CurrentPrincipal() me: Principal,
    @Req() req: Request,
    @Query() query: Record<string, unknown>,
  ) {
    const { serverId, ordering } = readListQuery(query);
    const page = readPageRequest(query, this.config);
    const { count, rows } = await this.snapshots.list(me, { serverId, ordering }, page);
    return buildPage(req, page, count, rows.map(snapshotView));
  }

  @Get(':id')
  @ApiDoc.snapshots.get()
  async get(@CurrentPrincipal() me: Principal, @Param('id', SnapshotId()) id: number) {
    return snapshotView(await this.snapshots.get(me, id));
  }

  @Post()
  @ApiDoc.snapshots.create()
  @Audit('snapshot.create', 'snapshot')
  @UseInterceptors(IdempotencyInterceptor)
  async create(
    @CurrentPrincipal() me: Principal,
    @Req() req: Request,
    @Body() dto: CreateSnapshotDto,
    @IdempotencyKeyId() idempotencyKeyId?: number,
  ) {
    const { snapshot, actionId } = await this.snapshots.create(
      me,
      { serverId: dto.server_id, name: dto.name, description: dto.description },
      idempotencyKeyId,
    );
    return {
      ...snapshotView(snapshot),
      message: message('snapshot_create_started', languageOf(req.headers['accept-language'])),
      action_id: actionId,
    };
  }

  @Post(':id/restore')
  @ApiDoc.snapshots.restore()
  @HttpCode(200)
  @Audit('snapshot.restore', 'snapshot')
  @UseInterceptors(IdempotencyInterceptor)
  async restore(
    @CurrentPrincipal() me: Principal,
    @Req() req: Request,
    @Param('id', SnapshotId()) id: number,
    @IdempotencyKeyId() idempotencyKeyId?: number,
  ) {
    const { snap, server, actionId } = await this.snapshots.restore(me, id, idempotencyKeyId);
    return {
      status: 'success',
      message: message('restore_started', languageOf(req.headers['accept-language'])),
      snapshot: { id: snap.id, name: snap.name, created_at: apiTime(snap.createdAt) },
      server: { id: server.id, name: server.name, status: 'restoring' },
      action_id: actionId,
    };
  }

  @Delete(':id')
  @ApiDoc.snapshots.delete()
  @HttpCode(204)
  @Audit('snapshot.delete', 'snapshot')
  async delete(@CurrentPrincipal() me: Principal, @Param('id', SnapshotId()) id: number): Promise<void> {
    await this.snapshots.delete(me, id);
  }
}
