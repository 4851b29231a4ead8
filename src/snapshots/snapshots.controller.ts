import {
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  Param,
  Patch,
  Post,
  Query,
  Req,
  UseInterceptors,
} from '@nestjs/common';
import type { Request } from 'express';
import { ApiDoc, ApiDocs } from '../openapi/endpoints';
import { CurrentPrincipal } from '../auth/decorators';
import { Principal } from '../auth/principal';
import { PathIdPipe } from '../common/ids';
import { languageOf } from '../common/messages';
import { buildPage, pageRequestOf } from '../common/pagination';
import { Audit, AuditInterceptor } from '../audit/audit.interceptor';
import { IdempotencyInterceptor, IdempotencyKeyId } from '../idempotency/idempotency.interceptor';
import { CreateSnapshotDto } from './dto/create-snapshot.dto';
import { ChangeProtectionDto } from '../common/delete-protection';
import { SnapshotListQuery } from './snapshot-list-params';
import { restoreStartedView, snapshotCreatedView, snapshotView } from './snapshot.view';
import { SnapshotsService } from './snapshots.service';
import { UpdateLabelsDto } from '../labels/update-labels.dto';
import { labelsAuditDetail } from '../labels/labels';
import { ListingRead } from '../common/route-table';
import { SNAPSHOT_LIST_PARAMS } from './snapshot-list-params';

const SnapshotId = () => new PathIdPipe('snapshot_not_found');

@ApiDocs.snapshots()
@Controller('api/v1/snapshots')
@UseInterceptors(AuditInterceptor)
export class SnapshotsController {
  constructor(private readonly snapshots: SnapshotsService) {}

  @Get()
  @ListingRead(SNAPSHOT_LIST_PARAMS)
  @ApiDoc.snapshots.list()
  async list(@CurrentPrincipal() me: Principal, @Req() req: Request, @Query() query: SnapshotListQuery) {
    const page = pageRequestOf(query);
    const filter = {
      serverId: query.server_id,
      ordering: query.ordering,
      labelSelector: query.label_selector,
    };
    const { count, rows } = await this.snapshots.list(me, filter, page);
    return buildPage(req, page, count, rows.map(snapshotView));
  }

  @Get(':id')
  @ListingRead()
  @ApiDoc.snapshots.get()
  async get(@CurrentPrincipal() me: Principal, @Param('id', SnapshotId()) id: number) {
    return snapshotView(await this.snapshots.get(me, id));
  }

  @Patch(':id')
  @ApiDoc.snapshots.update()
  @Audit('snapshot.update', 'snapshot', { detailOf: labelsAuditDetail })
  async update(
    @CurrentPrincipal() me: Principal,
    @Param('id', SnapshotId()) id: number,
    @Body() dto: UpdateLabelsDto,
  ) {
    return snapshotView(await this.snapshots.setLabels(me, id, dto.labels));
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
      { serverId: dto.server_id, name: dto.name, description: dto.description, labels: dto.labels },
      idempotencyKeyId,
    );
    return snapshotCreatedView(snapshot, actionId, languageOf(req.headers['accept-language']));
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
    return restoreStartedView(snap, server, actionId, languageOf(req.headers['accept-language']));
  }

  @Post(':id/actions/change_protection')
  @ApiDoc.snapshots.changeProtection()
  @HttpCode(200)
  @Audit('snapshot.change_protection', 'snapshot', { bodyFields: ['delete'] })
  @UseInterceptors(IdempotencyInterceptor)
  async changeProtection(
    @CurrentPrincipal() me: Principal,
    @Param('id', SnapshotId()) id: number,
    @Body() dto: ChangeProtectionDto,
  ) {
    return snapshotView(await this.snapshots.changeProtection(me, id, dto.delete));
  }

  @Delete(':id')
  @ApiDoc.snapshots.delete()
  @HttpCode(204)
  @Audit('snapshot.delete', 'snapshot')
  async delete(@CurrentPrincipal() me: Principal, @Param('id', SnapshotId()) id: number): Promise<void> {
    await this.snapshots.delete(me, id);
  }
}
