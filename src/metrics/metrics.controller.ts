import { Controller, Get, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { ApiTokenService } from '../auth/api-token.service';
import { Public } from '../auth/decorators';
import { isAdmin } from '../auth/principal';
import { looksLikeToken } from '../auth/token-codec';
import { problems } from '../common/problem';
import { AppConfig } from '../config/app-config';
import { credentialOf, matchesSecret } from './metrics-access';
import { MetricsService } from './metrics.service';

/**
 * Prometheus scrape endpoint of the API. Not public: it needs `Authorization: Bearer <METRICS_TOKEN>`
 * (what Prometheus is given) or an admin API token; anything else is the usual 401/403 problem.
 */
@ApiExcludeController()
@Controller()
@Public()
export class MetricsController {
  constructor(
    private readonly metrics: MetricsService,
    private readonly config: AppConfig,
    private readonly tokens: ApiTokenService,
  ) {}

  @Get('metrics')
  async scrape(@Req() req: Request, @Res() res: Response): Promise<void> {
    const credential = credentialOf(req.headers.authorization);
    if (!matchesSecret(credential, this.config.metricsToken)) {
      const principal =
        credential && looksLikeToken(credential) ? await this.tokens.authenticate(credential) : null;
      if (!principal) throw problems.unauthorized();
      if (!isAdmin(principal)) throw problems.forbidden('admin');
    }
    const { contentType, body } = await this.metrics.render();
    res.setHeader('Cache-Control', 'no-store');
    res.type(contentType).send(body);
  }
}
