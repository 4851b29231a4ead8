import { LoggerModule } from 'nestjs-pino';
import type { Request } from 'express';
import { redactTokenParameter } from '../auth/bearer-token';
import { AppConfig } from '../config/app-config';
import { requestIdOf } from './request-context';

/** Structured JSON logs (pino); every HTTP log line carries the request id. */
export function loggerModule(role: string) {
  return LoggerModule.forRootAsync({
    inject: [AppConfig],
    useFactory: (config: AppConfig) => ({
      pinoHttp: {
        level: config.logLevel,
        base: { role },
        genReqId: (req) => requestIdOf(req as Request),
        customProps: (req) => ({ requestId: requestIdOf(req as Request) }),
        redact: { paths: ['req.headers.authorization', 'req.headers.cookie'], censor: '[redacted]' },
        serializers: {
          req: (req: { id: string; method: string; url: string }) => ({
            id: req.id,
            method: req.method,
            url: redactTokenParameter(req.url),
          }),
        },
        // The `request completed` line is RequestRecorder's, for every request whichever part answers it.
        autoLogging: false,
      },
    }),
  });
}
