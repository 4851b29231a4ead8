import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { ConfigError, loadConfig, Role } from './config/app-config';
import { createHttpApp } from './app/http-app';
import { WorkerModule } from './app/worker.module';

async function main(): Promise<void> {
  const role = process.argv[2] as Role | undefined;
  if (role !== 'api' && role !== 'worker') {
    process.stderr.write('usage: node dist/main.js api|worker\n');
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
  if (role === 'api') {
    const app = await createHttpApp(config);
    await app.listen(config.port, config.host);
    const address = app.getHttpServer().address();
    process.stdout.write(`${JSON.stringify({ msg: 'api listening', address })}\n`);
  } else {
    const app = await NestFactory.createApplicationContext(WorkerModule.forConfig(config), {
      bufferLogs: true,
    });
    app.enableShutdownHooks();
    await app.init();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`fatal: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
