import { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import { Logger } from 'nestjs-pino';
import { jsonBodyParser } from '../common/body-parsing';
import { requestIdMiddleware, trailingSlashMiddleware } from '../common/request-context';
import { AppConfig } from '../config/app-config';
import { mountApiDocs } from '../openapi/setup';
import { ApiModule } from './api.module';

/** Builds the HTTP application exactly as production runs it (tests use this too). */
export async function createHttpApp(config: AppConfig): Promise<INestApplication> {
  const app = await NestFactory.create<NestExpressApplication>(ApiModule.forConfig(config), {
    bodyParser: false,
    bufferLogs: true,
  });
  app.useLogger(app.get(Logger));
  app.set('trust proxy', config.trustProxy);
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(requestIdMiddleware);
  app.use(trailingSlashMiddleware);
  app.use(jsonBodyParser(config.bodyLimitBytes));
  mountApiDocs(app);
  app.enableShutdownHooks();
  return app;
}
