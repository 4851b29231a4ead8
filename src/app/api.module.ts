import { DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER, APP_PIPE } from '@nestjs/core';
import { AuthModule } from '../auth/auth.module';
import { CommonModule } from '../common/common.module';
import { loggerModule } from '../common/logging';
import { ProblemDetailsFilter } from '../common/problem-details.filter';
import { createValidationPipe } from '../common/validation';
import { AppConfig } from '../config/app-config';
import { ConfigModule } from '../config/config.module';
import { HealthModule } from '../health/health.module';
import { ApiMetricsModule } from '../metrics/metrics.module';
import { NodesModule } from '../nodes/nodes.module';
import { PrismaModule } from '../prisma/prisma.module';
import { RedisModule } from '../redis/redis.module';
import { ServersModule } from '../servers/servers.module';
import { SnapshotsModule } from '../snapshots/snapshots.module';
import { BackupsModule } from '../backups/backups.module';
import { BackupScheduleModule } from '../backup-schedule/backup-schedule.module';
import { ActionsModule } from '../actions/actions.module';
import { AuditModule } from '../audit/audit.module';
import { IdempotencyModule } from '../idempotency/idempotency.module';
import { HotReadModule } from '../read-path/hot-read.module';
import { RouteTableModule } from '../common/route-table';
import { EventsModule } from '../events/events.module';
import { ServerPowerModule } from '../servers/power/server-power.module';
import { RestoreUndoModule } from '../restore-undo/restore-undo.module';

/** The HTTP API process. */
@Module({})
export class ApiModule {
  static forConfig(config: AppConfig): DynamicModule {
    return {
      module: ApiModule,
      imports: [
        ConfigModule.forConfig(config),
        loggerModule('api'),
        CommonModule,
        RouteTableModule,
        PrismaModule,
        RedisModule,
        AuthModule,
        HealthModule,
        ApiMetricsModule,
        NodesModule,
        ServersModule,
        SnapshotsModule,
        BackupsModule,
        BackupScheduleModule,
        ActionsModule,
        IdempotencyModule,
        AuditModule,
        HotReadModule,
        EventsModule,
        ServerPowerModule,
        RestoreUndoModule,
      ],
      providers: [
        {
          provide: APP_FILTER,
          useFactory: (c: AppConfig) => new ProblemDetailsFilter(c.bodyLimitBytes),
          inject: [AppConfig],
        },
        { provide: APP_PIPE, useFactory: createValidationPipe },
      ],
    };
  }
}
