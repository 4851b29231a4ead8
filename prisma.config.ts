// Prisma CLI configuration. Migrations run through the WASM ("js") schema engine over node-postgres, so
// `prisma migrate deploy` works offline (Prisma's native engines would be downloaded at run time).
import path from 'node:path';
import { defineConfig } from 'prisma/config';
import { makeMigrationAdapterFactory } from './prisma/migration-adapter';

// `prisma generate` reads no database, but the schema's `url = env("DATABASE_URL")` must resolve (without
// it Prisma 6.19 falls back to downloading a native query engine). Give generate a placeholder.
if (process.argv.includes('generate') && !process.env.DATABASE_URL) {
  process.env.DATABASE_URL = 'postgresql://generate-only@localhost/unused';
}

export default defineConfig({
  experimental: { adapter: true },
  engine: 'js',
  schema: path.join('prisma', 'schema.prisma'),
  migrations: { path: path.join('prisma', 'migrations') },
  adapter: async () => makeMigrationAdapterFactory(requireDatabaseUrl()),
});

function requireDatabaseUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('DATABASE_URL is not set (e.g. postgresql://postgres@127.0.0.1:55432/vps)');
  return url;
}
