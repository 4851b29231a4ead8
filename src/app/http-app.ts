import { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import type { Server } from 'node:http';
import { Logger } from 'nestjs-pino';
import { jsonBodyParser } from '../common/body-parsing';
import { answerMiddleware } from '../common/etag';
import { RouteTable } from '../common/route-table';
import { parseQuery } from '../common/query-string';
import { urlLimitMiddleware } from '../common/url-limit';
import { requestIdMiddleware, trailingSlashMiddleware } from '../common/request-context';
import { AppConfig } from '../config/app-config';
import { trustFunctionOf } from '../config/trust-proxy';
import { mountApiDocs } from '../openapi/setup';
import { HotReadPath } from '../read-path/hot-read-path';
import { RequestRecorder } from '../metrics/request-recorder';
import { ApiModule } from './api.module';
import { securityHeaders } from './security-headers';

/** Builds the HTTP application exactly as production runs it (tests use this too). */
export async function createHttpApp(config: AppConfig): Promise<INestApplication> {
  const app = await NestFactory.create<NestExpressApplication>(ApiModule.forConfig(config), {
    bodyParser: false,
    bufferLogs: true,
  });
  app.useLogger(app.get(Logger));
  app.set('trust proxy', trustFunctionOf(config.trustProxy));
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', parseQuery);
  app.use(requestIdMiddleware);
  app.use(urlLimitMiddleware);
  app.use(securityHeaders());
  app.use(trailingSlashMiddleware);
  app.use(answerMiddleware(app.get(RouteTable)));
  app.use(jsonBodyParser(config.bodyLimitBytes));
  mountApiDocs(app);
  // Slow clients: a request must send its headers, and then finish, within these bounds.
  const server = app.getHttpServer() as Server;
  server.headersTimeout = config.headersTimeoutMs;
  server.requestTimeout = config.requestTimeoutMs;
  server.keepAliveTimeout = 5000;
  // In front of the whole pipeline: batched token and rate-limit checks, identical polls answered once.
  if (config.hotReadPath) app.get(HotReadPath).install(server);
  // In front of everything: each request's metric and log line, written once whatever answered it.
  app.get(RequestRecorder).install(server);
  return app;
}
