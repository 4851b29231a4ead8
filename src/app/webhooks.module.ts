import { DynamicModule, Module, OnModuleDestroy } from '@nestjs/common';
import { CommonModule } from '../common/common.module';
import { loggerModule } from '../common/logging';
import { AppConfig } from '../config/app-config';
import { ConfigModule } from '../config/config.module';
import { WebhookSender } from '../events/webhook-sender';
import { WebhookSenderModule } from '../events/webhook-sender.module';
import { PrismaModule } from '../prisma/prisma.module';

/** The webhook sender process (`node dist/main.js webhooks`): the database and the sender, nothing else. */
@Module({})
export class WebhooksModule implements OnModuleDestroy {
  constructor(private readonly sender: WebhookSender) {}

  /**
   * The round in flight finishes before the database closes: Nest runs every onModuleDestroy (this
   * root module's first, the global Prisma last) before any onApplicationShutdown.
   */
  async onModuleDestroy(): Promise<void> {
    await this.sender.stop();
  }

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
