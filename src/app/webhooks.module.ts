import { DynamicModule, Module } from '@nestjs/common';
import { CommonModule } from '../common/common.module';
import { loggerModule } from '../common/logging';
import { AppConfig } from '../config/app-config';
import { ConfigModule } from '../config/config.module';
import { WebhookSenderModule } from '../events/webhook-sender.module';
import { PrismaModule } from '../prisma/prisma.module';

/** The webhook sender process (`node dist/main.js webhooks`): the database and the sender, nothing else. */
@Module({})
export class WebhooksModule {
  static forConfig(config: AppConfig): DynamicModule {
    return {
      module: WebhooksModule,
      imports: [
        ConfigModule.forConfig(config),
        loggerModule('webhooks'),
        CommonModule,
        PrismaModule,
        WebhookSenderModule,
      ],
    };
  }
}
