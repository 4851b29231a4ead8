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
import { parseId, PathIdPipe } from '../common/ids';
import { languageOf, message } from '../common/messages';
import { buildPage, readPageRequest } from '../common/pagination';
import { FieldError, problems } from '../common/problem';
import { Audit, AuditInterceptor } from '../audit/audit.interceptor';
import { AppConfig } from '../config/app-config';
import { IdempotencyInterceptor, IdempotencyKeyId } from '../idempotency/idempotency.interceptor';
import { CreateSnapshotDto } from './dto/create-snapshot.dto';
import { snapshotView } from './snapshot.view';
import { SNAPSHOT_ORDERINGS, SnapshotOrdering } from './snapshot.repository';
import { SnapshotsService } from './snapshots.service';
import { ListingRead } from '../common/route-table';
import { SNAPSHOT_LIST_PARAMS } from './snapshot-list-params';

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
  @ListingRead(SNAPSHOT_LIST_PARAMS)
  @ApiDoc.snapshots.list()
  async list(
    @CurrentPrincipal() me: Principal,
    @Req() req: Request,
    @Query() query: Record<string, unknown>,
  ) {
    const errors: FieldError[] = [];
    let serverId: number | undefined;
    if (query.server_id !== undefined) {
      const id = parseId(query.server_id);
      if (id === null) errors.push({ field: 'server_id', message: 'server_id must be a positive integer' });
      else serverId = id;
    }
    const ordering = (query.ordering ?? '-created_at') as SnapshotOrdering;
    if (!SNAPSHOT_ORDERINGS.includes(ordering)) {
      errors.push({ field: 'ordering', message: `ordering must be one of ${SNAPSHOT_ORDERINGS.join(', ')}` });
    }
    if (errors.length) throw problems.validation(errors);
    const page = readPageRequest(query, this.config);
    const { count, rows } = await this.snapshots.list(me, { serverId, ordering }, page);
    return buildPage(req, page, count, rows.map(snapshotView));
  }

  @Get(':id')
  @ListingRead()
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
