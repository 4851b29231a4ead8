import { Controller, Get, HttpCode } from '@nestjs/common';
import { Public } from '../auth/decorators';
import { ProblemException } from '../common/problem';
import { ApiDoc, ApiDocs } from '../openapi/endpoints';
import { HealthView, ReadinessChecks, ReadinessView } from './health.view';
import { Readiness } from './readiness';

/** Liveness and readiness, without a token. */
@ApiDocs.health()
@Controller()
@Public()
export class HealthController {
  constructor(private readonly readiness: Readiness) {}

  /** The process is alive and serving HTTP. */
  @Get('healthz')
  @ApiDoc.health.live()
  @HttpCode(200)
  live(): HealthView {
    return { status: 'ok' };
  }

  /**
   * Postgres and Redis answer (asked at most once a second, see Readiness). 503 problem details naming
   * what is down.
   */
  @Get('readyz')
  @ApiDoc.health.ready()
  async ready(): Promise<ReadinessView> {
    const { postgres, redis } = await this.readiness.check();
    const checks: ReadinessChecks = { postgres: postgres ? 'up' : 'down', redis: redis ? 'up' : 'down' };
    if (!postgres || !redis) {
      const down = Object.entries(checks)
        .filter(([, v]) => v === 'down')
        .map(([k]) => (k === 'postgres' ? 'PostgreSQL' : 'Redis'));
      throw new ProblemException({
        status: 503,
        code: 'service_unavailable',
        params: { what: down.join(' and ') },
        extra: { checks },
      });
    }
    return { status: 'ready', checks };
  }
}
