import { DynamicModule, Module, OnModuleDestroy } from '@nestjs/common';
import { APP_FILTER, APP_PIPE, HttpAdapterHost } from '@nestjs/core';
import type { Server } from 'node:http';
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
import { BackupScheduler } from '../backup-schedule/backup-scheduler';
import { ActionsModule } from '../actions/actions.module';
import { AuditModule } from '../audit/audit.module';
import { IdempotencyModule } from '../idempotency/idempotency.module';
import { HotReadModule } from '../read-path/hot-read.module';
import { RouteTableModule } from '../common/route-table';
import { EventRetention } from '../events/event-retention';
import { EventsModule } from '../events/events.module';
import { ServerPowerModule } from '../servers/power/server-power.module';
import { RestoreUndoModule } from '../restore-undo/restore-undo.module';

/** The HTTP API process. */
@Module({})
export class ApiModule implements OnModuleDestroy {
  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly scheduler: BackupScheduler,
    private readonly retention: EventRetention,
  ) {}

  /**
   * Closing stops taking requests and lets the ones in flight finish (and the scheduler's and event
   * retention's passes) before anything they use closes: Nest runs every onModuleDestroy (this root
   * module's first, the global Prisma and Redis last) before it closes the HTTP server itself.
   */
  async onModuleDestroy(): Promise<void> {
    const server = this.adapterHost.httpAdapter?.getHttpServer() as Server | undefined;
    await Promise.all([
      server?.listening ? drain(server) : undefined,
      this.scheduler.stop(),
      this.retention.stop(),
    ]);
  }

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

/**
 * Closes the server once its requests are answered. Connections kept alive are closed as soon as they
 * fall idle, rather than after their keep-alive timeout.
 */
function drain(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    const idle = setInterval(() => server.closeIdleConnections(), 50);
    server.close(() => {
      clearInterval(idle);
      resolve();
    });
    server.closeIdleConnections();
  });
}
