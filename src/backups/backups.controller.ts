import {
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  Param,
  Patch,
  Post,
  Put,
  Query,
  Req,
  UseInterceptors,
} from '@nestjs/common';
import type { Request } from 'express';
import { Audit, AuditInterceptor } from '../audit/audit.interceptor';
import { CurrentPrincipal } from '../auth/decorators';
import { Principal } from '../auth/principal';
import { PathIdPipe } from '../common/ids';
import { languageOf } from '../common/messages';
import { buildPage, pageRequestOf } from '../common/pagination';
import { IdempotencyInterceptor, IdempotencyKeyId } from '../idempotency/idempotency.interceptor';
import { ApiDoc, ApiDocs } from '../openapi/endpoints';
import { BackupListQuery } from './backup-list-params';
import { BackupsService } from './backups.service';
import { UpdateLabelsDto } from '../labels/update-labels.dto';
import { labelsAuditDetail } from '../labels/labels';
import {
  backupCreatedView,
  backupRestoreStartedView,
  backupVerifyStartedView,
  backupView,
} from './backup.view';
import { BackupPolicyDto } from './dto/backup-policy.dto';
import { CreateBackupDto, RestoreBackupDto } from './dto/create-backup.dto';
import { ChangeProtectionDto } from '../common/delete-protection';

const BackupId = () => new PathIdPipe('backup_not_found');
const ServerId = () => new PathIdPipe('server_not_found');

@ApiDocs.backups()
@Controller('api/v1/backups')
@UseInterceptors(AuditInterceptor)
export class BackupsController {
  constructor(private readonly backups: BackupsService) {}

  @Get()
  @ApiDoc.backups.list()
  async list(@CurrentPrincipal() me: Principal, @Req() req: Request, @Query() query: BackupListQuery) {
    const page = pageRequestOf(query);
    const filter = {
      serverId: query.server_id,
      ordering: query.ordering,
      kind: query.kind,
      labelSelector: query.label_selector,
    };
    const { count, rows } = await this.backups.list(me, filter, page);
    return buildPage(req, page, count, rows.map(backupView));
  }

  @Get(':id')
  @ApiDoc.backups.get()
  async get(@CurrentPrincipal() me: Principal, @Param('id', BackupId()) id: number) {
    return backupView(await this.backups.get(me, id));
  }

  @Patch(':id')
  @ApiDoc.backups.update()
  @Audit('backup.update', 'backup', { detailOf: labelsAuditDetail })
  async update(
    @CurrentPrincipal() me: Principal,
    @Param('id', BackupId()) id: number,
    @Body() dto: UpdateLabelsDto,
  ) {
    return backupView(await this.backups.setLabels(me, id, dto.labels));
  }

  @Post()
  @ApiDoc.backups.create()
  @Audit('backup.create', 'backup')
  @UseInterceptors(IdempotencyInterceptor)
  async create(
    @CurrentPrincipal() me: Principal,
    @Req() req: Request,
    @Body() dto: CreateBackupDto,
    @IdempotencyKeyId() idempotencyKeyId?: number,
  ) {
    const { backup, actionId } = await this.backups.create(
      me,
      { serverId: dto.server_id, name: dto.name, description: dto.description, labels: dto.labels },
      idempotencyKeyId,
    );
    return backupCreatedView(backup, actionId, languageOf(req.headers['accept-language']));
  }

  @Post(':id/restore')
  @ApiDoc.backups.restore()
  @HttpCode(200)
  @Audit('backup.restore', 'backup', { bodyFields: ['server_id'] })
  @UseInterceptors(IdempotencyInterceptor)
  async restore(
    @CurrentPrincipal() me: Principal,
    @Req() req: Request,
    @Param('id', BackupId()) id: number,
    @Body() dto: RestoreBackupDto,
    @IdempotencyKeyId() idempotencyKeyId?: number,
  ) {
    const { backup, server, actionId } = await this.backups.restore(me, id, dto?.server_id, idempotencyKeyId);
    return backupRestoreStartedView(backup, server, actionId, languageOf(req.headers['accept-language']));
  }

  @Post(':id/verify')
  @ApiDoc.backups.verify()
  @HttpCode(200)
  @Audit('backup.verify', 'backup')
  async verify(@CurrentPrincipal() me: Principal, @Req() req: Request, @Param('id', BackupId()) id: number) {
    const { backup, actionId } = await this.backups.verify(me, id);
    return backupVerifyStartedView(backup, actionId, languageOf(req.headers['accept-language']));
  }

  @Post(':id/actions/change_protection')
  @ApiDoc.backups.changeProtection()
  @HttpCode(200)
  @Audit('backup.change_protection', 'backup', { bodyFields: ['delete'] })
  @UseInterceptors(IdempotencyInterceptor)
  async changeProtection(
    @CurrentPrincipal() me: Principal,
    @Param('id', BackupId()) id: number,
    @Body() dto: ChangeProtectionDto,
  ) {
    return backupView(await this.backups.changeProtection(me, id, dto.delete));
  }

  @Delete(':id')
  @ApiDoc.backups.delete()
  @HttpCode(204)
  @Audit('backup.delete', 'backup')
  async delete(@CurrentPrincipal() me: Principal, @Param('id', BackupId()) id: number): Promise<void> {
    await this.backups.delete(me, id);
  }
}

/** `servers/{id}/backup-policy/`: the server's automatic backups. */
@ApiDocs.backups()
@Controller('api/v1/servers')
@UseInterceptors(AuditInterceptor)
export class BackupPolicyController {
  constructor(private readonly backups: BackupsService) {}

  @Get(':id/backup-policy')
  @ApiDoc.backups.getPolicy()
  getPolicy(@CurrentPrincipal() me: Principal, @Param('id', ServerId()) id: number) {
    return this.backups.getPolicy(me, id);
  }

  @Put(':id/backup-policy')
  @ApiDoc.backups.putPolicy()
  @Audit('backup_policy.update', 'server', { bodyFields: ['enabled'] })
  putPolicy(
    @CurrentPrincipal() me: Principal,
    @Param('id', ServerId()) id: number,
    @Body() dto: BackupPolicyDto,
  ) {
    return this.backups.putPolicy(me, id, {
      enabled: dto.enabled,
      schedule: {
        frequency: dto.schedule.frequency,
        weekday: dto.schedule.weekday ?? null,
        hour: dto.schedule.hour,
      },
      retention: { daily: dto.retention.daily, weekly: dto.retention.weekly, monthly: dto.retention.monthly },
    });
  }
}
