import 'reflect-metadata';
import { applyApiV8Flags } from './app/api-v8';
import { applyMallocEnv } from './app/malloc-env';
import { applyWorkerThreadpool } from './app/worker-threadpool';
import { applyWorkerV8Flags } from './app/worker-v8';
import { ConfigError, loadConfig, Role } from './config/app-config';

/**
 * Graceful shutdown on SIGTERM/SIGINT: closing the application stops taking work first (in-flight
 * requests, running jobs, a webhook round finish) and only then tears the modules down (database,
 * Redis); each role's root module does the first part (ApiModule, WorkerModule, WebhooksModule), so
 * tests close the same way. Exit 0 when done; 1 if it takes longer than SHUTDOWN_TIMEOUT_MS (a job cut
 * short is taken up again by stalled-job recovery).
 */
function onTermination(timeoutMs: number, close: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`${JSON.stringify({ msg: 'shutting down', signal })}\n`);
    setTimeout(() => {
      process.stderr.write(`shutdown took longer than ${timeoutMs} ms; exiting\n`);
      process.exit(1);
    }, timeoutMs).unref();
    close().then(
      () => process.exit(0),
      (e: unknown) => {
        process.stderr.write(`shutdown failed: ${e instanceof Error ? e.message : String(e)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function main(): Promise<void> {
  const role = process.argv[2] as Role | undefined;
  if (role !== 'api' && role !== 'worker' && role !== 'webhooks') {
    process.stderr.write('usage: node dist/main.js api|worker|webhooks\n');
    process.exit(2);
  }
  let config;
  try {
    config = loadConfig(process.env, role);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw e;
  }
  // Before anything else: it may start this process again with glibc's malloc settings (see malloc-env.ts).
  applyMallocEnv(config.mallocTuning);
  // Each role loads only its own modules: the worker never loads Express, Swagger, the controllers and
  // their DTO validators, and the API never loads the hypervisor drivers.
  if (role === 'api') {
    applyApiV8Flags(); // first: see api-v8.ts
    const { createHttpApp } = await import('./app/http-app');
    const app = await createHttpApp(config);
    await app.listen(config.port, config.host);
    const address = app.getHttpServer().address();
    process.stdout.write(`${JSON.stringify({ msg: 'api listening', address })}\n`);
    onTermination(config.shutdownTimeoutMs, () => app.close());
  } else if (role === 'webhooks') {
    const { NestFactory } = await import('@nestjs/core');
    const { Logger } = await import('nestjs-pino');
    const { WebhooksModule } = await import('./app/webhooks.module');
    const app = await NestFactory.createApplicationContext(WebhooksModule.forConfig(config), {
      bufferLogs: true,
    });
    app.useLogger(app.get(Logger));
    await app.init();
    process.stdout.write(`${JSON.stringify({ msg: 'webhook sender running' })}\n`);
    onTermination(config.shutdownTimeoutMs, () => app.close());
  } else {
    applyWorkerV8Flags(); // first: see worker-v8.ts
    applyWorkerThreadpool(); // before any file is read: see worker-threadpool.ts
    const { NestFactory } = await import('@nestjs/core');
    const { Logger } = await import('nestjs-pino');
    const { WorkerModule } = await import('./app/worker.module');
    const app = await NestFactory.createApplicationContext(WorkerModule.forConfig(config), {
      bufferLogs: true,
    });
    app.useLogger(app.get(Logger));
    await app.init();
    onTermination(config.shutdownTimeoutMs, () => app.close());
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`fatal: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
