/**
 * The OpenAPI document served by the running API (real Postgres + Redis).
 *
 * - /api/openapi.json and /api/docs are public; the document is OpenAPI 3.1 with a bearer scheme.
 * - Redocly CLI (from node_modules) lints it with zero errors.
 * - The examples of the customers' published page (list, create 201, restore 200) are in it exactly.
 * - Every operation is documented (summary, operationId, success and problem-details responses), and
 *   real responses of the running service conform to the documented status codes and schemas.
 * - It is the document `npm run openapi:emit` writes (and the typed client was generated from).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Ajv2020, { ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import request from 'supertest';
import { SCOPES } from '../../src/auth/principal';
import { PROBLEM_CODES } from '../../src/common/problem';
import { SnapshotStatus } from '../../src/generated/prisma/enums';
import { ACTION_ERROR_CODES } from '../../src/jobs/operation-failure';
import { createNode, createTenant, createToken } from '../factories';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';

const ROOT = path.resolve(__dirname, '../..');
const MAX_INT32 = 2_147_483_647;
const CONTRACT = path.resolve(ROOT, '../shared/spec/api-contract.md');

type Json = { [key: string]: unknown };
type Doc = {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Json>; securitySchemes: Record<string, Json> };
  security?: unknown[];
};
type Operation = {
  operationId: string;
  summary?: string;
  tags?: string[];
  security?: unknown[];
  parameters?: { in: string; name: string }[];
  responses: Record<
    string,
    { content?: Record<string, { schema: Json; examples?: Record<string, { value: unknown }> }> }
  >;
};

/** The published examples, exactly (checked against the contract file when it is at hand). */
const PUBLISHED = {
  list: {
    count: 2,
    results: [
      {
        id: 801,
        server: { id: 12345, name: 'web-server-01' },
        name: 'pre-migration-snapshot',
        status: 'completed',
        size_mb: 5120,
        created_at: '2025-01-15T18:30:00Z',
        description: 'Before major migration',
      },
      {
        id: 798,
        server: { id: 12345, name: 'web-server-01' },
        name: 'weekly-snapshot-2025-01-08',
        status: 'completed',
        size_mb: 4856,
        created_at: '2025-01-08T12:00:00Z',
        description: 'Weekly snapshot',
      },
    ],
  },
  create: {
    id: 802,
    server: { id: 12345, name: 'web-server-01' },
    name: 'before-update-snapshot',
    status: 'in_progress',
    size_mb: null,
    created_at: '2025-01-16T16:15:00Z',
    description: 'Snapshot before system update',
    message: 'Snapshot is being created. This may take 3-10 minutes depending on server size.',
  },
  restore: {
    status: 'success',
    message: 'Server is being restored from snapshot. This may take 5-15 minutes.',
    snapshot: { id: 801, name: 'pre-migration-snapshot', created_at: '2025-01-15T18:30:00Z' },
    server: { id: 12345, name: 'web-server-01', status: 'restoring' },
  },
};

// ------------------------------------------------------------------ validating against the document

/**
 * A JSON Schema 2020-12 validator (ajv, formats checked) of the document's own schemas. In this test
 * only, an object schema refuses members it does not describe, so an undocumented field fails.
 */
class DocumentValidator {
  private readonly ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
  private readonly compiled = new Map<string, ValidateFunction>();

  constructor(doc: Doc) {
    addFormats(this.ajv);
    this.ajv.addVocabulary(['example']); // OpenAPI's annotation keyword
    const schemas = rewriteRefs(structuredClone(doc.components.schemas), '#/$defs/') as Json;
    closeObjects(schemas);
    this.ajv.addSchema({ $id: COMPONENTS, $defs: schemas });
  }

  errors(schema: Json, value: unknown): string[] {
    const key = JSON.stringify(schema);
    let validate = this.compiled.get(key);
    if (!validate) {
      const own = rewriteRefs(structuredClone(schema), `${COMPONENTS}#/$defs/`) as Json;
      closeObjects(own);
      validate = this.ajv.compile(own);
      this.compiled.set(key, validate);
    }
    return validate(value) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '$'} ${e.message}`);
  }
}

const COMPONENTS = 'https://admin.vps.org/openapi/components';

function rewriteRefs(node: unknown, to: string): unknown {
  if (Array.isArray(node)) return node.map((n) => rewriteRefs(n, to));
  if (typeof node !== 'object' || node === null) return node;
  const out: Json = {};
  for (const [k, v] of Object.entries(node)) {
    out[k] =
      k === '$ref' && typeof v === 'string' ? v.replace('#/components/schemas/', to) : rewriteRefs(v, to);
  }
  return out;
}

function closeObjects(node: unknown): void {
  if (Array.isArray(node)) return node.forEach(closeObjects);
  if (typeof node !== 'object' || node === null) return;
  const o = node as Json;
  if (o.properties && o.additionalProperties === undefined) o.additionalProperties = false;
  Object.values(o).forEach(closeObjects);
}

function operation(doc: Doc, operationId: string): Operation {
  for (const item of Object.values(doc.paths)) {
    for (const op of Object.values(item)) if (op.operationId === operationId) return op;
  }
  throw new Error(`no operation ${operationId}`);
}

/** What each operation answered in this run: `operationId status`. */
const exercised = new Set<string>();

/** The response is documented: its status, its media type, and its body's schema (ajv). */
function expectDocumented(
  doc: Doc,
  validator: DocumentValidator,
  operationId: string,
  res: request.Response,
): void {
  const op = operation(doc, operationId);
  exercised.add(`${operationId} ${res.status}`);
  const documented = op.responses[String(res.status)];
  expect({ operationId, status: res.status, documented: Boolean(documented) }).toEqual({
    operationId,
    status: res.status,
    documented: true,
  });
  if (res.status === 204) return;
  const mediaType = String(res.headers['content-type']).split(';')[0];
  const content = documented.content?.[mediaType];
  expect({ operationId, status: res.status, mediaType, documented: Boolean(content) }).toEqual({
    operationId,
    status: res.status,
    mediaType,
    documented: true,
  });
  expect({ operationId, status: res.status, errors: validator.errors(content!.schema, res.body) }).toEqual({
    operationId,
    status: res.status,
    errors: [],
  });
}

/** The JSON blocks of the contract file's published part (list 200, create 201, restore 200, in order). */
function contractExamples(): unknown[] {
  const text = readFileSync(CONTRACT, 'utf8');
  const part1 = text.slice(0, text.indexOf('## Part 2'));
  return [...part1.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => JSON.parse(m[1]));
}

describe('OpenAPI document (real Postgres + Redis)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let doc: Doc;
  let validator: DocumentValidator;
  let nodeId: number;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    nodeId = (await createNode(api.prisma)).id;
    const res = await request(api.url).get('/api/openapi.json');
    expect(res.status).toBe(200);
    doc = res.body as Doc;
    validator = new DocumentValidator(doc);
  });
  afterAll(async () => {
    await api?.close();
    await db?.drop();
  });

  describe('served without a token', () => {
    it('/api/openapi.json is OpenAPI 3.1 with the bearer scheme, required on every /api/v1 operation', async () => {
      const res = await request(api.url).get('/api/openapi.json');
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(doc.openapi).toBe('3.1.0');
      expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
      expect(doc.security).toEqual([{ bearer: [] }]);
      // The effective requirement: the operation's own, else the document's.
      for (const [p, item] of Object.entries(doc.paths)) {
        for (const op of Object.values(item)) {
          const security = op.security ?? doc.security;
          const expected = p.startsWith('/api/v1/') ? [{ bearer: [] }] : [];
          expect({ p, security }).toEqual({ p, security: expected });
        }
      }
    });

    it.each(['/api/docs', '/api/docs/'])('%s is the interactive page', async (p) => {
      const res = await request(api.url).get(p);
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/html/);
      expect(res.text).toContain('swagger-ui');
    });

    it('the YAML form too', async () => {
      const res = await request(api.url).get('/api/openapi.yaml');
      expect(res.status).toBe(200);
      expect(res.text).toContain('openapi: 3.1.0');
    });
  });

  it('Redocly CLI lints it with zero errors', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'openapi-lint-'));
    try {
      const file = path.join(dir, 'openapi.json');
      writeFileSync(file, JSON.stringify(doc, null, 2));
      const run = spawnSync(
        path.join(ROOT, 'node_modules/.bin/redocly'),
        ['lint', file, '--config', path.join(ROOT, 'src/openapi/redocly.yaml'), '--format=json'],
        {
          cwd: dir,
          encoding: 'utf8',
          env: {
            ...process.env,
            REDOCLY_TELEMETRY: 'off',
            REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true',
            NO_COLOR: '1',
          },
          timeout: 60_000,
        },
      );
      expect(run.error).toBeUndefined();
      const report = JSON.parse(run.stdout) as {
        totals: { errors: number; warnings: number };
        problems: { ruleId: string; severity: string; message: string; location: { pointer: string }[] }[];
      };
      const show = (p: (typeof report.problems)[number]) =>
        `${p.ruleId} ${p.location[0]?.pointer}: ${p.message}`;
      const errors = report.problems.filter((p) => p.severity === 'error').map(show);
      const warnings = report.problems.filter((p) => p.severity !== 'error').map(show);
      if (warnings.length) process.stderr.write(`redocly lint warnings:\n  ${warnings.join('\n  ')}\n`);
      expect(errors).toEqual([]);
      expect(report.totals.errors).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('the published contract', () => {
    it('has the published paths, with and without ids named as published', () => {
      expect(Object.keys(doc.paths['/api/v1/snapshots/']).sort()).toEqual(['get', 'post']);
      expect(Object.keys(doc.paths['/api/v1/snapshots/{snapshot_id}/restore/'])).toEqual(['post']);
      // PATCH (labels) is this service's addition.
      expect(Object.keys(doc.paths['/api/v1/snapshots/{snapshot_id}/']).sort()).toEqual([
        'delete',
        'get',
        'patch',
      ]);
      expect(Object.keys(doc.paths['/api/v1/actions/{action_id}/'])).toEqual(['get']);
      const list = operation(doc, 'listSnapshots');
      expect(list.parameters).toEqual(
        expect.arrayContaining([expect.objectContaining({ in: 'query', name: 'server_id' })]),
      );
      expect(Object.keys(list.responses)).toEqual(expect.arrayContaining(['200', '401']));
      expect(Object.keys(operation(doc, 'createSnapshot').responses)).toEqual(
        expect.arrayContaining(['201', '400', '401', '404']),
      );
      expect(Object.keys(operation(doc, 'restoreSnapshot').responses)).toEqual(
        expect.arrayContaining(['200', '400', '401', '404']),
      );
      expect(Object.keys(operation(doc, 'deleteSnapshot').responses)).toEqual(
        expect.arrayContaining(['204', '401', '404']),
      );
    });

    it('carries the published example bodies exactly (list, create 201, restore 200)', () => {
      const example = (opId: string, status: string) =>
        operation(doc, opId).responses[status].content!['application/json'].examples!.published.value;
      expect(example('listSnapshots', '200')).toEqual(PUBLISHED.list);
      expect(example('createSnapshot', '201')).toEqual(PUBLISHED.create);
      expect(example('restoreSnapshot', '200')).toEqual(PUBLISHED.restore);
      // …and they are valid responses of the documented schemas.
      const schema = (opId: string, status: string) =>
        operation(doc, opId).responses[status].content!['application/json'].schema;
      expect(validator.errors(schema('listSnapshots', '200'), PUBLISHED.list)).toEqual([]);
      expect(validator.errors(schema('createSnapshot', '201'), PUBLISHED.create)).toEqual([]);
      expect(validator.errors(schema('restoreSnapshot', '200'), PUBLISHED.restore)).toEqual([]);
    });

    const contractAtHand = existsSync(CONTRACT);
    (contractAtHand ? it : it.skip)('the examples above are the contract file’s own', () => {
      expect(contractExamples()).toEqual([PUBLISHED.list, PUBLISHED.create, PUBLISHED.restore]);
    });
  });

  it('lists every problem `code` of the service, and every enum is the code’s own', () => {
    const enumOf = (name: string) => doc.components.schemas[name].enum;
    expect(enumOf('ProblemCode')).toEqual([...PROBLEM_CODES]);
    expect(enumOf('SnapshotStatus')).toEqual(Object.values(SnapshotStatus));
    expect(enumOf('ActionErrorCode')).toEqual([...ACTION_ERROR_CODES]);
    expect(enumOf('Scope')).toEqual([...SCOPES]);
  });

  it('every example in it is a valid instance of its schema (ajv, formats and bounds included)', () => {
    const invalid: string[] = [];
    let checked = 0;
    for (const [p, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        for (const [status, response] of Object.entries(op.responses)) {
          for (const [mediaType, content] of Object.entries(response.content ?? {})) {
            const c = content as {
              schema: Json;
              example?: unknown;
              examples?: Record<string, { value: unknown }>;
            };
            const examples = Object.entries(c.examples ?? {}).map(([name, e]) => [name, e.value] as const);
            if ('example' in c) examples.push(['example', c.example]);
            for (const [name, value] of examples) {
              checked++;
              for (const e of validator.errors(c.schema, value)) {
                invalid.push(`${method.toUpperCase()} ${p} ${status} ${mediaType} ${name}: ${e}`);
              }
            }
          }
        }
      }
    }
    expect(invalid).toEqual([]);
    expect(checked).toBeGreaterThan(40);
  });

  it('documents every operation: summary, id, tag, a success response and problem-details errors', () => {
    const problem = doc.components.schemas.Problem as {
      required: string[];
      properties: Record<string, Json>;
    };
    expect(problem.required).toEqual(
      expect.arrayContaining(['type', 'title', 'status', 'detail', 'code', 'request_id']),
    );
    expect(Object.keys(problem.properties)).toEqual(expect.arrayContaining(['errors']));
    const ids = new Set<string>();
    const gaps: string[] = [];
    for (const [p, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const where = `${method.toUpperCase()} ${p}`;
        const gap = (what: string) => gaps.push(`${where}: ${what}`);
        if (typeof op.summary !== 'string') gap('no summary');
        if (op.tags?.length !== 1) gap(`tags ${JSON.stringify(op.tags)}`);
        if (ids.has(op.operationId)) gap(`duplicate operationId ${op.operationId}`);
        ids.add(op.operationId);
        const statuses = Object.keys(op.responses);
        if (!statuses.some((s) => /^2\d\d$/.test(s))) gap('no documented success response');
        for (const s of statuses.filter((s) => /^[45]\d\d$/.test(s))) {
          const content = op.responses[s].content ?? {};
          if (Object.keys(content).join() !== 'application/problem+json') gap(`${s} is not problem+json`);
          else if (content['application/problem+json'].schema.$ref !== '#/components/schemas/Problem') {
            gap(`${s} is not the Problem schema`);
          }
        }
        if (p.startsWith('/api/v1/') && !(statuses.includes('401') && statuses.includes('403'))) {
          gap('no 401/403 problem responses');
        }
      }
    }
    // An endpoint without documentation: give its controller @ApiDocs.<tag>() and its handler an
    // @ApiDoc.<...>() entry in src/openapi/endpoints.ts (or @ApiExcludeController() if it is not API).
    expect(gaps).toEqual([]);
  });

  it('real responses of the service are documented (status, media type, schema)', async () => {
    const t = await createTenant(api.prisma, nodeId, { serverStatus: 'stopped' });
    const MIB = 1024 * 1024;
    const done = await api.prisma.snapshot.create({
      data: {
        accountId: t.account.id,
        serverId: t.server.id,
        name: 'pre-migration-snapshot',
        description: 'Before major migration',
        status: 'completed',
        progress: 100,
        sizeBytes: BigInt(5120 * MIB),
        consistency: 'stopped',
        completedAt: new Date(),
      },
    });
    const get = (p: string) => request(api.url).get(p).set(t.auth);

    expectDocumented(
      doc,
      validator,
      'listSnapshots',
      await get(`/api/v1/snapshots/?server_id=${t.server.id}`),
    );
    expectDocumented(doc, validator, 'getSnapshot', await get(`/api/v1/snapshots/${done.id}/`));
    const restore = await request(api.url).post(`/api/v1/snapshots/${done.id}/restore/`).set(t.auth);
    expect(restore.status).toBe(200);
    expectDocumented(doc, validator, 'restoreSnapshot', restore);
    expectDocumented(doc, validator, 'getAction', await get(`/api/v1/actions/${restore.body.action_id}/`));
    expectDocumented(doc, validator, 'getServer', await get(`/api/v1/servers/${t.server.id}/`));
    expectDocumented(doc, validator, 'listServers', await get('/api/v1/servers/'));
    // The restore holds the server: a create is refused with the documented 400.
    const busy = await request(api.url)
      .post('/api/v1/snapshots/')
      .set(t.auth)
      .send({ server_id: t.server.id, name: 'x' });
    expect(busy.body.code).toBe('invalid_server_state');
    expectDocumented(doc, validator, 'createSnapshot', busy);

    const other = await createTenant(api.prisma, nodeId);
    const created = await request(api.url)
      .post('/api/v1/snapshots/')
      .set(other.auth)
      .send({ server_id: other.server.id, name: 'before-update-snapshot', description: 'x' });
    expect(created.status).toBe(201);
    expectDocumented(doc, validator, 'createSnapshot', created);
    expectDocumented(
      doc,
      validator,
      'listTokens',
      await request(api.url).get('/api/v1/tokens/').set(other.auth),
    );
    const token = await request(api.url)
      .post('/api/v1/tokens/')
      .set(other.auth)
      .send({ name: 'ci', scopes: ['read'] });
    expectDocumented(doc, validator, 'createToken', token);
    expectDocumented(
      doc,
      validator,
      'revokeToken',
      await request(api.url).delete(`/api/v1/tokens/${token.body.id}/`).set(other.auth),
    );
    expectDocumented(
      doc,
      validator,
      'deleteSnapshot',
      await request(api.url).delete(`/api/v1/snapshots/${done.id}/`).set(t.auth),
    );

    // Problems.
    expectDocumented(doc, validator, 'listSnapshots', await request(api.url).get('/api/v1/snapshots/'));
    expectDocumented(doc, validator, 'getSnapshot', await get('/api/v1/snapshots/2147483647/'));
    expectDocumented(doc, validator, 'listSnapshots', await get('/api/v1/snapshots/?page_size=0'));
    expectDocumented(
      doc,
      validator,
      'createSnapshot',
      await request(api.url)
        .post('/api/v1/snapshots/')
        .set(t.auth)
        .send({ server_id: t.server.id, name: 'bad name!' }),
    );
    const readOnly = await createToken(api.prisma, t.account.id, { scopes: ['read'] });
    expectDocumented(
      doc,
      validator,
      'deleteSnapshot',
      await request(api.url)
        .delete(`/api/v1/snapshots/${done.id}/`)
        .set('Authorization', `Bearer ${readOnly.token}`),
    );
    expectDocumented(doc, validator, 'adminListNodes', await get('/api/v1/admin/nodes/'));
    expectDocumented(doc, validator, 'healthz', await request(api.url).get('/healthz'));
    expectDocumented(doc, validator, 'readyz', await request(api.url).get('/readyz'));

    // More problems, one route after another.
    const missing = MAX_INT32;
    expectDocumented(doc, validator, 'getServer', await get(`/api/v1/servers/${missing}/`));
    expectDocumented(doc, validator, 'getAction', await get(`/api/v1/actions/${missing}/`));
    const undo = (id: number) => request(api.url).post(`/api/v1/actions/${id}/undo/`).set(t.auth);
    expectDocumented(doc, validator, 'undoRestore', await undo(missing));
    expectDocumented(doc, validator, 'undoRestore', await undo(restore.body.action_id as number));
    // A restore that succeeded with its safety copy taken (as its job leaves them), on a free server.
    const restorer = await createTenant(api.prisma, nodeId, { serverStatus: 'stopped' });
    const copy = await api.prisma.snapshot.create({
      data: {
        accountId: restorer.account.id,
        serverId: restorer.server.id,
        name: 'pre-restore-1',
        kind: 'pre_restore',
        status: 'completed',
        expiresAt: new Date(Date.now() + 3_600_000),
      },
    });
    const restored = await api.prisma.action.create({
      data: {
        kind: 'restore_snapshot',
        status: 'succeeded',
        accountId: restorer.account.id,
        serverId: restorer.server.id,
        snapshotId: copy.id,
        safetySnapshotId: copy.id,
      },
    });
    const undone = await request(api.url).post(`/api/v1/actions/${restored.id}/undo/`).set(restorer.auth);
    expect(undone.status).toBe(201);
    expectDocumented(doc, validator, 'undoRestore', undone);
    expectDocumented(doc, validator, 'listServers', await get('/api/v1/servers/?page=9'));
    expectDocumented(doc, validator, 'listServers', await get('/api/v1/servers/?page_size=101'));
    expectDocumented(doc, validator, 'listSnapshots', await get('/api/v1/snapshots/?page=9'));
    expectDocumented(doc, validator, 'listTokens', await request(api.url).get('/api/v1/tokens/'));
    expectDocumented(
      doc,
      validator,
      'restoreSnapshot',
      await request(api.url).post(`/api/v1/snapshots/${missing}/restore/`).set(t.auth),
    );
    expectDocumented(
      doc,
      validator,
      'revokeToken',
      await request(api.url).delete(`/api/v1/tokens/${missing}/`).set(t.auth),
    );
    expectDocumented(
      doc,
      validator,
      'createToken',
      await request(api.url)
        .post('/api/v1/tokens/')
        .set(t.auth)
        .send({ name: 'x', scopes: ['admin'] }),
    );
    expectDocumented(
      doc,
      validator,
      'createSnapshot',
      await request(api.url).post('/api/v1/snapshots/').set(t.auth).type('json').send('{"name":'),
    );

    // A snapshot nothing holds is deleted: 204.
    const idle = await createTenant(api.prisma, nodeId, { serverStatus: 'stopped' });
    const spare = await api.prisma.snapshot.create({
      data: {
        accountId: idle.account.id,
        serverId: idle.server.id,
        name: 'spare',
        status: 'completed',
        progress: 100,
        sizeBytes: BigInt(MIB),
        consistency: 'stopped',
        completedAt: new Date(),
      },
    });
    expectDocumented(
      doc,
      validator,
      'deleteSnapshot',
      await request(api.url).delete(`/api/v1/snapshots/${spare.id}/`).set(idle.auth),
    );

    // Backups (the worker is not running here: their actions stay pending, which is all the API needs).
    const bt = await createTenant(api.prisma, nodeId, { serverStatus: 'stopped' });
    const seedBackup = (name: string) =>
      api.prisma.backup.create({
        data: {
          accountId: bt.account.id,
          serverId: bt.server.id,
          name,
          status: 'completed',
          progress: 100,
          sizeBytes: BigInt(5120 * MIB),
          storedBytes: BigInt(312 * MIB),
          consistency: 'stopped',
          mode: 'full',
          modeReason: 'no_previous_backup',
          checkpoint: 'vps-backup-seeded',
          store: 'default',
          completedAt: new Date(),
        },
      });
    const [nightly, spareBackup] = [await seedBackup('nightly'), await seedBackup('spare')];
    const asBt = (p: string) => request(api.url).get(p).set(bt.auth);
    expectDocumented(doc, validator, 'listBackups', await asBt(`/api/v1/backups/?server_id=${bt.server.id}`));
    expectDocumented(doc, validator, 'listBackups', await asBt('/api/v1/backups/?kind=weekly'));
    expectDocumented(doc, validator, 'getBackup', await asBt(`/api/v1/backups/${nightly.id}/`));
    expectDocumented(doc, validator, 'getBackup', await asBt('/api/v1/backups/2147483647/'));
    const backupRestore = await request(api.url)
      .post(`/api/v1/backups/${nightly.id}/restore/`)
      .set(bt.auth)
      .send({});
    expect(backupRestore.status).toBe(200);
    expectDocumented(doc, validator, 'restoreBackup', backupRestore);
    expectDocumented(
      doc,
      validator,
      'getAction',
      await asBt(`/api/v1/actions/${backupRestore.body.action_id}/`),
    );
    expectDocumented(doc, validator, 'getServer', await asBt(`/api/v1/servers/${bt.server.id}/`));
    const backupBusy = await request(api.url)
      .post('/api/v1/backups/')
      .set(bt.auth)
      .send({ server_id: bt.server.id, name: 'x' });
    expect(backupBusy.body.code).toBe('invalid_server_state');
    expectDocumented(doc, validator, 'createBackup', backupBusy);
    const restoring = await request(api.url).delete(`/api/v1/backups/${nightly.id}/`).set(bt.auth);
    expect(restoring.body.code).toBe('invalid_backup_state');
    expectDocumented(doc, validator, 'deleteBackup', restoring);
    expectDocumented(
      doc,
      validator,
      'restoreBackup',
      await request(api.url).post('/api/v1/backups/2147483647/restore/').set(bt.auth).send({}),
    );
    const verifying = await request(api.url).post(`/api/v1/backups/${nightly.id}/verify/`).set(bt.auth);
    expect(verifying.status).toBe(200);
    expectDocumented(doc, validator, 'verifyBackup', verifying);
    expectDocumented(
      doc,
      validator,
      'verifyBackup',
      await request(api.url).post('/api/v1/backups/2147483647/verify/').set(bt.auth),
    );
    expectDocumented(
      doc,
      validator,
      'deleteBackup',
      await request(api.url).delete(`/api/v1/backups/${spareBackup.id}/`).set(bt.auth),
    );
    const backupCreated = await request(api.url)
      .post('/api/v1/backups/')
      .set(idle.auth)
      .send({ server_id: idle.server.id, name: 'nightly-2025-01-15' });
    expect(backupCreated.status).toBe(201);
    expectDocumented(doc, validator, 'createBackup', backupCreated);
    const policyPath = `/api/v1/servers/${bt.server.id}/backup-policy/`;
    expectDocumented(doc, validator, 'getBackupPolicy', await asBt(policyPath));
    expectDocumented(
      doc,
      validator,
      'getBackupPolicy',
      await asBt('/api/v1/servers/2147483647/backup-policy/'),
    );
    const policy = {
      enabled: true,
      schedule: { frequency: 'weekly', weekday: 0, hour: 2 },
      retention: { daily: 7, weekly: 4, monthly: 0 },
    };
    expectDocumented(
      doc,
      validator,
      'putBackupPolicy',
      await request(api.url).put(policyPath).set(bt.auth).send(policy),
    );
    expectDocumented(
      doc,
      validator,
      'putBackupPolicy',
      await request(api.url)
        .put(policyPath)
        .set(bt.auth)
        .send({ ...policy, schedule: { ...policy.schedule, hour: 24 } }),
    );

    // The operators' endpoints.
    const admin = await createToken(api.prisma, t.account.id, { scopes: ['read', 'write', 'admin'] });
    const adminAuth = { Authorization: `Bearer ${admin.token}` };
    const nodeName = `doc-${process.pid}`;
    const node = await request(api.url)
      .post('/api/v1/admin/nodes/')
      .set(adminAuth)
      .send({ name: nodeName, driver: 'fake', snapshot_dir: `/srv/${nodeName}` });
    expect(node.status).toBe(201);
    expectDocumented(doc, validator, 'adminCreateNode', node);
    expectDocumented(
      doc,
      validator,
      'adminCreateNode',
      await request(api.url)
        .post('/api/v1/admin/nodes/')
        .set(adminAuth)
        .send({ name: nodeName, driver: 'fake', snapshot_dir: `/srv/${nodeName}` }),
    );
    expectDocumented(
      doc,
      validator,
      'adminCreateNode',
      await request(api.url).post('/api/v1/admin/nodes/').set(adminAuth).send({ name: 'Bad Name!' }),
    );
    const moved = await request(api.url)
      .patch(`/api/v1/admin/nodes/${node.body.id}/`)
      .set(adminAuth)
      .send({ backup_store: 'default' });
    expect(moved.status).toBe(200);
    expectDocumented(doc, validator, 'adminUpdateNode', moved);
    expectDocumented(
      doc,
      validator,
      'adminUpdateNode',
      await request(api.url)
        .patch('/api/v1/admin/nodes/2000000000/')
        .set(adminAuth)
        .send({ backup_store: 'default' }),
    );
    const server = await request(api.url)
      .post('/api/v1/admin/servers/')
      .set(adminAuth)
      .send({
        account_id: t.account.id,
        node_id: node.body.id,
        name: 'db-01',
        domain: `vm-${nodeName}`,
        disk_path: `/var/lib/libvirt/images/${nodeName}.qcow2`,
      });
    expect(server.status).toBe(201);
    expectDocumented(doc, validator, 'adminCreateServer', server);
    expectDocumented(
      doc,
      validator,
      'adminCreateServer',
      await request(api.url).post('/api/v1/admin/servers/').set(adminAuth).send({
        account_id: missing,
        node_id: node.body.id,
        name: 'x',
        domain: 'x',
        disk_path: '/var/lib/libvirt/images/y.qcow2',
      }),
    );
    expectDocumented(
      doc,
      validator,
      'adminCreateServer',
      await request(api.url).post('/api/v1/admin/servers/').set(t.auth).send({}),
    );
    expectDocumented(
      doc,
      validator,
      'adminListNodes',
      await request(api.url).get('/api/v1/admin/nodes/').set(adminAuth),
    );
    expectDocumented(
      doc,
      validator,
      'adminListAuditEvents',
      await request(api.url).get(`/api/v1/admin/audit-events/?account_id=${t.account.id}`).set(adminAuth),
    );
    expectDocumented(
      doc,
      validator,
      'adminListAuditEvents',
      await request(api.url).get('/api/v1/admin/audit-events/?action=Not-An-Action').set(adminAuth),
    );
    expectDocumented(doc, validator, 'adminListAuditEvents', await get('/api/v1/admin/audit-events/'));

    // Delete protection: set, a protected delete refused, unknown ids.
    const seededOf = {
      accountId: t.account.id,
      serverId: t.server.id,
      name: 'kept',
      status: 'completed' as const,
    };
    const kept = {
      snapshots: (await api.prisma.snapshot.create({ data: { ...seededOf, sizeBytes: 1024n } })).id,
      backups: (await api.prisma.backup.create({ data: { ...seededOf, sizeBytes: 1024n, store: 'default' } }))
        .id,
    };
    for (const [kind, opId] of [
      ['snapshots', 'Snapshot'],
      ['backups', 'Backup'],
    ] as const) {
      const changePath = (id: number) => `/api/v1/${kind}/${id}/actions/change_protection/`;
      const protect = await request(api.url).post(changePath(kept[kind])).set(t.auth).send({ delete: true });
      expect(protect.status).toBe(200);
      expectDocumented(doc, validator, `change${opId}Protection`, protect);
      const refused = await request(api.url).delete(`/api/v1/${kind}/${kept[kind]}/`).set(t.auth);
      expect(refused.body.code).toBe('protected');
      expectDocumented(doc, validator, `delete${opId}`, refused);
      expectDocumented(
        doc,
        validator,
        `change${opId}Protection`,
        await request(api.url).post(changePath(2147483647)).set(t.auth).send({ delete: true }),
      );
      expectDocumented(
        doc,
        validator,
        `change${opId}Protection`,
        await request(api.url).post(changePath(kept[kind])).set(t.auth).send({ delete: 'yes' }),
      );
    }

    // Webhooks and events (a public literal address: created without any connection).
    const hook = await request(api.url)
      .post('/api/v1/webhooks/')
      .set(t.auth)
      .send({ url: 'https://93.184.215.14/hook', event_types: ['backup.failed'] });
    expect(hook.status).toBe(201);
    expectDocumented(doc, validator, 'createWebhook', hook);
    expectDocumented(
      doc,
      validator,
      'createWebhook',
      await request(api.url).post('/api/v1/webhooks/').set(t.auth).send({ url: 'https://10.0.0.5/' }),
    );
    expectDocumented(doc, validator, 'listWebhooks', await get('/api/v1/webhooks/'));
    expectDocumented(doc, validator, 'listWebhooks', await request(api.url).get('/api/v1/webhooks/'));
    expectDocumented(doc, validator, 'getWebhook', await get(`/api/v1/webhooks/${hook.body.id}/`));
    expectDocumented(doc, validator, 'getWebhook', await get('/api/v1/webhooks/2000000000/'));
    expectDocumented(
      doc,
      validator,
      'deleteWebhook',
      await request(api.url).delete(`/api/v1/webhooks/${hook.body.id}/`).set(t.auth),
    );
    expectDocumented(
      doc,
      validator,
      'deleteWebhook',
      await request(api.url).delete(`/api/v1/webhooks/${hook.body.id}/`).set(t.auth),
    );
    // Power actions: 201 with the action; 400 busy and bad type; 404 another's server.
    const pt = await createTenant(api.prisma, nodeId);
    const powerOn = (id: number, body: object) =>
      request(api.url).post(`/api/v1/servers/${id}/actions/`).set(pt.auth).send(body);
    const stopping = await powerOn(pt.server.id, { type: 'stop' });
    expect(stopping.status).toBe(201);
    expectDocumented(doc, validator, 'serverPowerAction', stopping);
    expectDocumented(doc, validator, 'serverPowerAction', await powerOn(pt.server.id, { type: 'hibernate' }));
    expectDocumented(doc, validator, 'serverPowerAction', await powerOn(t.server.id, { type: 'start' }));
    await api.prisma
      .$executeRaw`SELECT emit_event(${t.account.id}, 'backup_policy.missed', '{"server_id": 1}'::jsonb)`;
    expectDocumented(doc, validator, 'listEvents', await get('/api/v1/events/?since=1&page_size=5'));
    expectDocumented(doc, validator, 'listEvents', await get('/api/v1/events/?since=abc'));
  });

  it('labels: each PATCH and each list with a label_selector answers as documented', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const snap = await api.prisma.snapshot.create({
      data: { accountId: t.account.id, serverId: t.server.id, name: 'l' },
    });
    const backup = await api.prisma.backup.create({
      data: { accountId: t.account.id, serverId: t.server.id, name: 'l' },
    });
    const patch = (p: string, body: object) => request(api.url).patch(p).set(t.auth).send(body);
    for (const [op, list, path] of [
      ['updateSnapshot', 'listSnapshots', `/api/v1/snapshots/${snap.id}/`],
      ['updateBackup', 'listBackups', `/api/v1/backups/${backup.id}/`],
      ['updateServer', 'listServers', `/api/v1/servers/${t.server.id}/`],
    ]) {
      const ok = await patch(path, { labels: { env: 'prod' } });
      expect(ok.status).toBe(200);
      expectDocumented(doc, validator, op, ok);
      expectDocumented(doc, validator, op, await patch(path, { labels: { env: 'pr od' } }));
      expectDocumented(
        doc,
        validator,
        op,
        await patch(path.replace(/\d+\/$/, `${MAX_INT32}/`), { labels: {} }),
      );
      const base = path.replace(/\d+\/$/, '');
      const listed = await request(api.url).get(`${base}?label_selector=env%3Dprod`).set(t.auth);
      expect(listed.body.count).toBe(1);
      expectDocumented(doc, validator, list, listed);
      expectDocumented(
        doc,
        validator,
        list,
        await request(api.url).get(`${base}?label_selector=env%20in%20(a`).set(t.auth),
      );
    }
  });

  it('every operation answered above with its documented success and at least one documented problem', () => {
    const missing: string[] = [];
    for (const item of Object.values(doc.paths)) {
      for (const op of Object.values(item)) {
        const statuses = Object.keys(op.responses);
        const answered = (s: string) => exercised.has(`${op.operationId} ${s}`);
        for (const s of statuses.filter((s) => /^2/.test(s)))
          if (!answered(s)) missing.push(`${op.operationId} ${s}`);
        const problems = statuses.filter((s) => /^[45]/.test(s));
        // readyz answers its one problem (503) only with a dependency down; its example is checked above.
        if (op.operationId === 'readyz') continue;
        if (problems.length && !problems.some(answered))
          missing.push(`${op.operationId}: no problem response`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('the query parameters’ documented bounds are the ones the API enforces', async () => {
    const t = await createTenant(api.prisma, nodeId);
    const params = operation(doc, 'listSnapshots').parameters as { in: string; name: string; schema: Json }[];
    const schemaOf = (name: string) => params.find((p) => p.in === 'query' && p.name === name)!.schema;
    const cases: [string, (string | number)[]][] = [
      ['page_size', [0, 1, 100, 101, 1000]],
      ['page', [0, 1]],
      ['server_id', [0, MAX_INT32 + 1]],
      ['ordering', ['name', '-created_at', 'size_mb']],
    ];
    for (const [name, values] of cases) {
      for (const value of values) {
        const documented = validator.errors(schemaOf(name), value).length === 0;
        const res = await request(api.url)
          .get(`/api/v1/snapshots/?${name}=${encodeURIComponent(String(value))}`)
          .set(t.auth);
        expect({ name, value, accepted: res.status !== 400 }).toEqual({ name, value, accepted: documented });
      }
    }
  });

  it('is the document `npm run openapi:emit` writes, which the typed client is generated from', () => {
    const emit = path.join(ROOT, 'dist/openapi/emit.js');
    expect({ built: existsSync(emit), hint: 'run `npm run build` first' }).toEqual({
      built: true,
      hint: expect.any(String),
    });
    const run = spawnSync(process.execPath, [emit, '--out', '-'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: '' });
    expect(JSON.parse(run.stdout)).toEqual(doc);
    const generated = path.join(ROOT, 'src/generated/openapi/openapi.json');
    expect(JSON.parse(readFileSync(generated, 'utf8'))).toEqual(doc);
    expect(existsSync(path.join(ROOT, 'src/generated/openapi/schema.d.ts'))).toBe(true);
  });
});
