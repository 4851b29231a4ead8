/**
 * The OpenAPI 3 document of the API, generated from the controllers' decorators (`@nestjs/swagger`).
 * The running API serves it at /api/openapi.json; `npm run openapi:emit` writes the same document to a
 * file without a database or Redis (see emit.ts); the typed client is generated from that file.
 */
import { INestApplication } from '@nestjs/common';
import { DocumentBuilder, OpenAPIObject, SwaggerModule } from '@nestjs/swagger';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { BEARER } from './endpoints';
import { ProblemSchema } from './schemas';

export const OPENAPI_JSON_PATH = '/api/openapi.json';
export const DOCS_PATH = '/api/docs';

const DESCRIPTION = `
The API behind admin.vps.org's **server snapshots**: list, create, restore and delete point-in-time
copies of your servers' disks, and follow the long operations they start.

**Authentication.** Every \`/api/v1/\` request carries \`Authorization: Bearer <API token>\` (tokens
look like \`vps_\` + 40 characters; scopes \`read\`, \`write\`, \`admin\`). A read-only token writing is
403; another account's resources are 404, never 403.

**Paths** end with a slash as published; the same path without it works too.

**Long operations.** Create and restore answer at once with an \`action_id\`; poll
\`GET /api/v1/actions/{action_id}/\` until its \`status\` is \`succeeded\` or \`failed\`. Only one create or
restore runs on a server at a time; at most 5 live snapshots per server.

**Errors** are RFC 9457 problem details (\`application/problem+json\`, schema \`Problem\`) with a stable
\`code\` and the \`request_id\` that the \`X-Request-Id\` response header also carries. With
\`Accept-Language: cy\` the \`detail\` and the create/restore \`message\` are in Welsh.

**Rate limits** apply per token and per account (all its tokens together): answers carry
\`RateLimit-Limit\`, \`RateLimit-Remaining\` and \`RateLimit-Reset\` of the tightest; over a limit is 429
\`rate_limited\` with \`Retry-After\`, naming the limit (\`limit_scope\`, \`limit_kind\`).
**Retries**: create and restore accept an \`Idempotency-Key\` header, so a retried request starts nothing
twice.

**Timestamps** are UTC, ISO 8601, second precision, with \`Z\`. **Ids** are integers from 1 to 2^31-1; a
path id that cannot be an id is the resource's own 404.

**Compatibility.** The published contract's fields, paths, status codes and values are kept as
published; this service only adds (\`progress\`, \`consistency\`, \`completed_at\`, \`error\`,
\`action_id\`, pagination, the detail, servers, actions and tokens resources).
`.trim();

const TAGS: [string, string][] = [
  ['snapshots', 'Point-in-time copies of a server (the published snapshots API, plus a detail endpoint).'],
  [
    'backups',
    'Incremental, deduplicated copies of a server in backup storage apart from its host, restorable onto any node.',
  ],
  ['servers', 'Your servers, with their snapshot quota and current operation.'],
  ['actions', 'Long operations (create, restore, delete) to poll.'],
  ['tokens', 'Your account’s API tokens.'],
  ['webhooks', 'Signed HTTP callbacks of your events (Standard Webhooks).'],
  ['events', 'What happened to your resources, in order: the events webhooks deliver, for polling.'],
  ['admin', 'Operators: hypervisor nodes and server registration (admin tokens only).'],
  ['health', 'Liveness and readiness probes (no token).'],
];

/** Path parameter names as the published page writes them (`{snapshot_id}`); routes declare `:id`. */
const PATH_PARAM_NAMES: [prefix: string, name: string][] = [
  ['/api/v1/snapshots/', 'snapshot_id'],
  ['/api/v1/backups/', 'backup_id'],
  ['/api/v1/servers/', 'server_id'],
  ['/api/v1/actions/', 'action_id'],
  ['/api/v1/tokens/', 'token_id'],
  ['/api/v1/webhooks/', 'webhook_id'],
];

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(path.resolve(__dirname, '../../package.json'), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/**
 * Published paths end with a slash and name their ids (`/api/v1/snapshots/{snapshot_id}/restore/`);
 * Nest routes are declared without the slash and with `:id`. Both forms reach the same handler.
 */
function publishedPaths(doc: OpenAPIObject): void {
  const paths: OpenAPIObject['paths'] = {};
  for (const [route, item] of Object.entries(doc.paths)) {
    if (!route.startsWith('/api/v1/')) {
      paths[route] = item;
      continue;
    }
    const name = PATH_PARAM_NAMES.find(([prefix]) => route.startsWith(prefix))?.[1];
    const renamed = name ? route.replace('{id}', `{${name}}`) : route;
    if (name && renamed !== route) {
      for (const op of Object.values(item)) {
        const params = (op as { parameters?: { in: string; name: string }[] }).parameters ?? [];
        for (const p of params) if (p.in === 'path' && p.name === 'id') p.name = name;
      }
    }
    paths[renamed.endsWith('/') ? renamed : `${renamed}/`] = item;
  }
  doc.paths = paths;
}

type Json = { [key: string]: unknown };
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * OpenAPI 3.1 spells "or null" as JSON Schema does: `@nestjs/swagger` writes 3.0's `nullable: true`,
 * which cannot make a `$ref` nullable. This rewrites every schema: `type: [t, 'null']` (and `null` in
 * an `enum`), or `oneOf: [{$ref}, {type: 'null'}]` for a reference.
 */
function nullableTo31(node: unknown): void {
  if (Array.isArray(node)) {
    node.forEach(nullableTo31);
    return;
  }
  if (!isObject(node)) return;
  for (const v of Object.values(node)) nullableTo31(v);
  if (node.nullable !== true) {
    if (node.nullable === false) delete node.nullable;
    return;
  }
  delete node.nullable;
  const allOf = node.allOf;
  if (Array.isArray(allOf) && allOf.length === 1) {
    delete node.allOf;
    delete node.type;
    node.oneOf = [allOf[0], { type: 'null' }];
  } else if (typeof node.type === 'string') {
    node.type = [node.type, 'null'];
    if (Array.isArray(node.enum) && !node.enum.includes(null)) node.enum = [...node.enum, null];
  } else if (typeof node.$ref === 'string') {
    const ref = node.$ref;
    delete node.$ref;
    node.oneOf = [{ $ref: ref }, { type: 'null' }];
  }
}

/** Probes (tag `health`) need no token: say so explicitly, as the document requires bearer elsewhere. */
function publicProbes(doc: OpenAPIObject): void {
  for (const item of Object.values(doc.paths)) {
    for (const op of Object.values(item) as { tags?: string[]; security?: unknown[] }[]) {
      if (isObject(op) && op.tags?.includes('health')) op.security = [];
    }
  }
}

/** Builds the document from the application's controllers (needs no running server or connections). */
export function buildOpenApiDocument(app: INestApplication): OpenAPIObject {
  const builder = new DocumentBuilder()
    .setTitle('admin.vps.org API — server snapshots')
    .setDescription(DESCRIPTION)
    .setOpenAPIVersion('3.1.0')
    .setVersion(packageVersion())
    .setContact('admin.vps.org', 'https://admin.vps.org/', 'support@vps.org')
    .setLicense('Proprietary', 'https://admin.vps.org/terms')
    .addServer('/', 'This service')
    .addServer('https://admin.vps.org', 'Production')
    .addBearerAuth(
      {
        type: 'http',
        scheme: 'bearer',
        bearerFormat: 'vps_ token',
        description: 'An API token: `vps_` followed by 40 base62 characters.',
      },
      BEARER,
    )
    .addSecurityRequirements(BEARER);
  for (const [name, description] of TAGS) builder.addTag(name, description);
  const doc = SwaggerModule.createDocument(app, builder.build(), {
    extraModels: [ProblemSchema],
    operationIdFactory: (_controller, method) => method,
  });
  publishedPaths(doc);
  publicProbes(doc);
  nullableTo31(doc);
  return doc;
}
