import { Global, MiddlewareConsumer, Module, NestModule } from '@nestjs/common';
import { AuditController } from './audit.controller';
import { AuditInterceptor } from './audit.interceptor';
import { AuditService } from './audit.service';
import { AuthRefusalAudit, AuthRefusalMiddleware } from './auth-refusals';

@Global()
@Module({ providers: [AuditService, AuditInterceptor], exports: [AuditService, AuditInterceptor] })
export class AuditCoreModule {}

/** The API's audit log: the admin listing, and every 401/403 answer (AuthRefusalAudit). */
@Module({
  imports: [AuditCoreModule],
  controllers: [AuditController],
  providers: [AuthRefusalAudit, AuthRefusalMiddleware],
})
export class AuditModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(AuthRefusalMiddleware).forRoutes('*');
  }
}
