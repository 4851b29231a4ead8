import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import { AppConfig } from '../config/app-config';
import { Readiness } from '../health/readiness';
import { credentialOf, matchesSecret } from './metrics-access';
import { MetricsService } from './metrics.service';

const JSON_TYPE = { 'Content-Type': 'application/json' };

/**
 * The worker's own small HTTP listener (off unless `WORKER_METRICS_PORT` is set): `GET /metrics` for
 * Prometheus (job metrics of this worker, labelled with its node), `GET /healthz` (alive) and
 * `GET /readyz` (Postgres and Redis answer, see Readiness; 503 otherwise) for probes and compose health checks.
 * `/metrics` needs `Bearer <METRICS_TOKEN>` when a token is configured; without one the configuration
 * only allows a loopback address (checked at start-up).
 */
@Injectable()
export class WorkerMetricsServer implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(WorkerMetricsServer.name);
  private server?: Server;

  constructor(
    private readonly metrics: MetricsService,
    private readonly config: AppConfig,
    private readonly readiness: Readiness,
  ) {
    this.metrics.registry.setDefaultLabels({ node: config.workerNode ?? 'unknown' });
  }

  /** The bound address (tests listen on a free port). */
  address(): AddressInfo | null {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a : null;
  }

  async onApplicationBootstrap(): Promise<void> {
    if (!this.config.workerMetricsPort) return;
    const server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.workerMetricsPort, this.config.workerMetricsHost, () => resolve());
    });
    server.on('error', (err) => this.logger.error({ err }, 'metrics listener error'));
    this.server = server;
    this.logger.log({ address: this.address(), node: this.config.workerNode }, 'worker metrics listening');
  }

  async onApplicationShutdown(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, { Allow: 'GET, HEAD' });
    if (path === '/healthz') return reply(res, 200, JSON_TYPE, '{"status":"ok"}');
    if (path === '/readyz') {
      const { postgres, redis } = await this.readiness.check();
      const ready = postgres && redis;
      const checks = { postgres: postgres ? 'up' : 'down', redis: redis ? 'up' : 'down' };
      const body = JSON.stringify({ status: ready ? 'ready' : 'not_ready', checks });
      return reply(res, ready ? 200 : 503, JSON_TYPE, body);
    }
    if (path !== '/metrics') return reply(res, 404);
    const token = this.config.metricsToken;
    if (token && !matchesSecret(credentialOf(req.headers.authorization), token)) {
      return reply(res, 401, { 'WWW-Authenticate': 'Bearer realm="admin.vps.org worker metrics"' });
    }
    try {
      const { contentType, body } = await this.metrics.render();
      reply(res, 200, { 'Content-Type': contentType, 'Cache-Control': 'no-store' }, body);
    } catch (err) {
      this.logger.error({ err }, 'metrics rendering failed');
      reply(res, 500);
    }
  }
}

function reply(res: ServerResponse, status: number, headers: Record<string, string> = {}, body = ''): void {
  res.writeHead(status, { ...headers, 'Content-Length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
