/**
 * `npm run openapi:emit [-- --out FILE]`: writes the OpenAPI document that the API serves at
 * /api/openapi.json, without a database, Redis or a listening socket. The application graph is built in
 * Nest's preview mode (modules and controllers are scanned, no provider is instantiated, so nothing
 * connects). `--out -` writes to stdout. Default: src/generated/openapi/openapi.json (git-ignored).
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ApiModule } from '../app/api.module';
import { loadConfig } from '../config/app-config';
import { buildOpenApiDocument } from './document';

export const DEFAULT_OUT = path.resolve(__dirname, '../../src/generated/openapi/openapi.json');

async function main(argv: string[]): Promise<void> {
  let out = DEFAULT_OUT;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out' && argv[i + 1]) out = argv[++i];
    else {
      process.stderr.write('usage: openapi:emit [--out FILE|-]\n');
      process.exit(2);
    }
  }
  // Placeholders only: in preview mode no provider is created, so these are never dialled.
  const config = loadConfig(
    {
      DATABASE_URL: 'postgresql://openapi-emit@127.0.0.1:9/unused',
      REDIS_URL: 'redis://127.0.0.1:9',
      LOG_LEVEL: 'silent',
    },
    'api',
  );
  const app = await NestFactory.create(ApiModule.forConfig(config), {
    preview: true,
    logger: false,
    abortOnError: false,
  });
  const json = `${JSON.stringify(buildOpenApiDocument(app), null, 2)}\n`;
  if (out === '-') {
    await new Promise<void>((resolve, reject) =>
      process.stdout.write(json, (err) => (err ? reject(err) : resolve())),
    );
  } else {
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, json);
    process.stderr.write(`openapi: wrote ${path.relative(process.cwd(), out) || out}\n`);
  }
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`openapi:emit failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
