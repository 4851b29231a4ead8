import { Controller, Get, HttpCode } from '@nestjs/common';
import { Public } from '../auth/decorators';
import { ProblemException } from '../common/problem';
import { ApiDoc, ApiDocs } from '../openapi/endpoints';
import { PrismaService } from '../prisma/prisma.service';
import { RedisService } from '../redis/redis.service';

/** Liveness and readiness, without a token. */
@ApiDocs.health()
@Controller()
@Public()
export class HealthController {
  constructor(
    private readonly prisma: PrismaService,
    private readonly redis: RedisService,
  ) {}

  /** The process is alive and serving HTTP. */
  @Get('healthz')
  @ApiDoc.health.live()
  @HttpCode(200)
  live() {
    return { status: 'ok' };
  }

  /** Postgres and Redis answer. 503 problem details naming what is down. */
  @Get('readyz')
  @ApiDoc.health.ready()
  async ready() {
    const [postgres, redis] = await Promise.all([this.postgresUp(), this.redis.ping()]);
    const checks = { postgres: postgres ? 'up' : 'down', redis: redis ? 'up' : 'down' };
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

  private async postgresUp(): Promise<boolean> {
    try {
      await Promise.race([
        this.prisma.$queryRaw`SELECT 1`,
        new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 2000).unref()),
      ]);
      return true;
    } catch {
      return false;
    }
  }
}
