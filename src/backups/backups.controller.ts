import {
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  Param,
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
import { apiTime } from '../common/clock';
import { PathIdPipe } from '../common/ids';
import { readListQuery } from '../common/list-query';
import { languageOf, message } from '../common/messages';
import { buildPage, readPageRequest } from '../common/pagination';
import { AppConfig } from '../config/app-config';
import { BackupKind } from '../generated/prisma/client';
import { IdempotencyInterceptor, IdempotencyKeyId } from '../idempotency/idempotency.interceptor';
import { BackupsDoc } from '../openapi/backups';
import { BackupsService } from './backups.service';
import { backupView } from './backup.view';
import { BackupPolicyDto } from './dto/backup-policy.dto';
import { CreateBackupDto, RestoreBackupDto } from './dto/create-backup.dto';

const BackupId = () => new PathIdPipe('backup_not_found');
const ServerId = () => new PathIdPipe('server_not_found');
const KINDS: readonly BackupKind[] = ['manual', 'automatic'];

@BackupsDoc.backups()
@Controller('api/v1/backups')
@UseInterceptors(AuditInterceptor)
export class BackupsController {
  constructor(
    private readonly backups: BackupsService,
    private readonly config: AppConfig,
  ) {}

  @Get()
  @BackupsDoc.list()
  async list(
    @CurrentPrincipal() me: Principal,
    @Req() req: Request,
    @Query() query: Record<string, unknown>,
  ) {
    const filter = readListQuery(query, (errors) => {
      const kind = query.kind as BackupKind | undefined;
      if (kind !== undefined && !KINDS.includes(kind))
        errors.push({ field: 'kind', message: `kind must be one of ${KINDS.join(', ')}` });
      return { kind };
    });
    const page = readPageRequest(query, this.config);
    const { count, rows } = await this.backups.list(me, filter, page);
    return buildPage(req, page, count, rows.map(backupView));
  }

  @Get(':id')
  @BackupsDoc.get()
  async get(@CurrentPrincipal() me: Principal, @Param('id', BackupId()) id: number) {
    return backupView(await this.backups.get(me, id));
  }

  @Post()
  @BackupsDoc.create()
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
      { serverId: dto.server_id, name: dto.name, description: dto.description },
      idempotencyKeyId,
    );
    return {
      ...backupView(backup),
      message: message('backup_create_started', languageOf(req.headers['accept-language'])),
      action_id: actionId,
    };
  }

  @Post(':id/restore')
  @BackupsDoc.restore()
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
    return {
      status: 'success',
      message: message('backup_restore_started', languageOf(req.headers['accept-language'])),
      backup: { id: backup.id, name: backup.name, created_at: apiTime(backup.createdAt) },
      server: { id: server.id, name: server.name, status: 'restoring' },
      action_id: actionId,
    };
  }

  @Delete(':id')
  @BackupsDoc.delete()
  @HttpCode(204)
  @Audit('backup.delete', 'backup')
  async delete(@CurrentPrincipal() me: Principal, @Param('id', BackupId()) id: number): Promise<void> {
    await this.backups.delete(me, id);
  }
}

/** `servers/{id}/backup-policy/`: the server's automatic backups. */
@BackupsDoc.backups()
@Controller('api/v1/servers')
@UseInterceptors(AuditInterceptor)
export class BackupPolicyController {
  constructor(private readonly backups: BackupsService) {}

  @Get(':id/backup-policy')
  @BackupsDoc.getPolicy()
  getPolicy(@CurrentPrincipal() me: Principal, @Param('id', ServerId()) id: number) {
    return this.backups.getPolicy(me, id);
  }

  @Put(':id/backup-policy')
  @BackupsDoc.putPolicy()
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
