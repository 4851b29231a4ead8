import request from 'supertest';
import { createAccount, createNode, createServer, createToken } from '../factories';
import { ApiTokenService } from '../../src/auth/api-token.service';
import { Scope } from '../../src/auth/principal';
import { apiTime } from '../../src/common/clock';
import { expectProblem } from '../support/problem-assertions';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';

/**
 * No token outgrows its parent: `POST /api/v1/tokens/` gives a child at most the caller's scopes and
 * lifetime, an account holds a bounded number of live tokens (also under concurrent creates), rate
 * limits count per account as well as per token, and the audit log records what a new token may do
 * and until when.
 */
describe('token rules (real Postgres + Redis)', () => {
  let db: TestDatabase;
  let api: TestApi;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
  });
  afterAll(async () => {
    await api?.close();
    await db?.drop();
  });

  const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });
  async function caller(opts: { scopes?: Scope[]; expiresAt?: Date | null } = {}) {
    const account = await createAccount(api.prisma);
    const { token, row } = await createToken(api.prisma, account.id, opts);
    return { account, token, row, auth: bearer(token) };
  }
  const mint = (base: string, auth: Record<string, string>, body: Record<string, unknown>) =>
    request(base)
      .post('/api/v1/tokens/')
      .set(auth)
      .send({ name: 'child', ...body });
  const fields = (res: request.Response) => (res.body.errors as { field: string }[]).map((e) => e.field);

  describe('scopes', () => {
    it("a child gets the caller's scopes by default, and never one the caller lacks", async () => {
      const rw = await caller({ scopes: ['read', 'write'] });
      expect((await mint(api.url, rw.auth, {})).body.scopes).toEqual(['read', 'write']);
      expect((await mint(api.url, rw.auth, { scopes: ['read'] })).body.scopes).toEqual(['read']);
      const admin = await mint(api.url, rw.auth, { scopes: ['read', 'admin'] });
      expectProblem(admin, 400, 'validation_failed');
      expect(fields(admin)).toEqual(['scopes']);

      // A write-only token: its child is write-only too, and cannot read.
      const w = await caller({ scopes: ['write'] });
      const child = await mint(api.url, w.auth, {});
      expect(child.status).toBe(201);
      expect(child.body.scopes).toEqual(['write']);
      const reader = await mint(api.url, w.auth, { scopes: ['read', 'write'] });
      expectProblem(reader, 400, 'validation_failed');
      expect(fields(reader)).toEqual(['scopes']);
      expect((await request(api.url).get('/api/v1/servers/').set(bearer(child.body.token))).status).toBe(403);
      // Nothing was written by the refusals.
      expect(await api.prisma.apiToken.count({ where: { accountId: w.account.id } })).toBe(2);
    });

    it('an admin token may give any scopes; by default its own', async () => {
      const admin = await caller({ scopes: ['admin'] });
      expect((await mint(api.url, admin.auth, {})).body.scopes).toEqual(['admin']);
      expect((await mint(api.url, admin.auth, { scopes: ['read'] })).body.scopes).toEqual(['read']);
    });
  });

  describe('expiry', () => {
    it('a child expires no later than the caller: by default when the caller does; later is 400', async () => {
      const parentExpiry = new Date(Date.now() + 10 * 86_400_000);
      const p = await caller({ expiresAt: parentExpiry });
      const byDefault = await mint(api.url, p.auth, {});
      expect(byDefault.status).toBe(201);
      expect(byDefault.body.expires_at).toBe(apiTime(parentExpiry));
      const sooner = await mint(api.url, p.auth, { expires_in_days: 9 });
      expect(sooner.status).toBe(201);
      expect(new Date(sooner.body.expires_at).getTime()).toBeLessThan(parentExpiry.getTime());
      const later = await mint(api.url, p.auth, { expires_in_days: 11 });
      expectProblem(later, 400, 'validation_failed');
      expect(fields(later)).toEqual(['expires_in_days']);
      expect(later.body.errors[0].message).toContain(apiTime(parentExpiry));
      // Both rules at once: both fields named.
      const both = await mint(api.url, p.auth, { expires_in_days: 30, scopes: ['admin'] });
      expect(fields(both).sort()).toEqual(['expires_in_days', 'scopes']);
    });

    it('a caller without expiry gives none by default, or any lifetime asked for', async () => {
      const p = await caller();
      expect((await mint(api.url, p.auth, {})).body.expires_at).toBeNull();
      expect((await mint(api.url, p.auth, { expires_in_days: 3650 })).status).toBe(201);
    });
  });

  describe('live tokens per account', () => {
    let capped: TestApi;
    beforeAll(async () => {
      capped = await startApi(testConfig(db, 'api', { TOKENS_PER_ACCOUNT_MAX: '3' }));
    });
    afterAll(async () => {
      await capped?.close();
    });

    it('past TOKENS_PER_ACCOUNT_MAX: 400 token_limit_reached with limit and used, in English and Welsh', async () => {
      const p = await caller();
      // Neither revoked nor expired tokens count.
      await createToken(api.prisma, p.account.id, { revokedAt: new Date() });
      await createToken(api.prisma, p.account.id, { expiresAt: new Date(Date.now() - 1000) });
      const made = [await mint(capped.url, p.auth, {}), await mint(capped.url, p.auth, {})];
      for (const m of made) expect(m.status).toBe(201);
      const over = await mint(capped.url, p.auth, {});
      expectProblem(over, 400, 'token_limit_reached');
      expect(over.body).toMatchObject({ limit: 3, used: 3 });
      expect(over.body.detail).toBe(
        'Bad Request - Token limit reached: this account already has 3 of 3 live tokens; revoke one first',
      );
      const cy = await mint(capped.url, p.auth, {}).set('Accept-Language', 'cy');
      expectProblem(cy, 400, 'token_limit_reached');
      expect(cy.body.detail).toMatch(/^Cais Gwael - Cyrhaeddwyd terfyn y tocynnau: .* 3 o 3 tocyn dilys/);
      // A revocation frees a slot.
      const revoked = await request(capped.url).delete(`/api/v1/tokens/${made[0].body.id}/`).set(p.auth);
      expect(revoked.status).toBe(204);
      expect((await mint(capped.url, p.auth, {})).status).toBe(201);
      // The operator (the CLI's path) is not capped.
      const operator = await capped.app.get(ApiTokenService).createAsOperator({
        accountId: p.account.id,
        name: 'ops',
        scopes: ['read'],
        expiresAt: null,
      });
      expect(operator.record.id).toBeGreaterThan(0);
    });

    it('holds under concurrent creates: 24 at once with 1 of 3 used make exactly 2 tokens', async () => {
      const p = await caller();
      const answers = await Promise.all(Array.from({ length: 24 }, () => mint(capped.url, p.auth, {})));
      const statuses = answers.map((a) => a.status);
      expect(statuses.filter((s) => s === 201)).toHaveLength(2);
      expect(statuses.filter((s) => s === 400)).toHaveLength(22);
      for (const a of answers.filter((x) => x.status === 400))
        expect(a.body.code).toBe('token_limit_reached');
      expect(await api.prisma.apiToken.count({ where: { accountId: p.account.id } })).toBe(3);
    });
  });

  it("the audit row of a token made through the API records its scopes and expiry, as the CLI's does", async () => {
    const p = await caller({ expiresAt: new Date(Date.now() + 5 * 86_400_000) });
    const made = await mint(api.url, p.auth, { scopes: ['read'], expires_in_days: 2 });
    expect(made.status).toBe(201);
    const row = await api.prisma.auditEvent.findFirstOrThrow({
      where: { accountId: p.account.id, action: 'token.create', outcome: 'accepted' },
    });
    expect(row.targetId).toBe(made.body.id);
    expect(row.detail).toMatchObject({ scopes: ['read'], expires_at: made.body.expires_at });
    expect(JSON.stringify(row.detail)).not.toContain(made.body.token);
    // A refused one is recorded as refused, with its code.
    await mint(api.url, p.auth, { expires_in_days: 30 });
    const refused = await api.prisma.auditEvent.findFirstOrThrow({
      where: { accountId: p.account.id, action: 'token.create', outcome: 'refused' },
    });
    expect(refused.detail).toMatchObject({ code: 'validation_failed' });
  });

  describe('rate limits per account', () => {
    async function notNearMinuteEnd(): Promise<void> {
      const s = new Date().getSeconds();
      if (s >= 50) await new Promise((r) => setTimeout(r, (61 - s) * 1000));
    }

    it('two tokens of one account together hit the account limit (pipeline and hot read path)', async () => {
      const limited = await startApi(
        testConfig(db, 'api', { RATE_LIMIT_PER_MINUTE: '100', RATE_LIMIT_ACCOUNT_PER_MINUTE: '6' }),
      );
      try {
        const p = await caller();
        const second = await createToken(api.prisma, p.account.id);
        const tokens = [p.token, second.token];
        await notNearMinuteEnd();
        const paths = ['/api/v1/servers/', '/api/v1/snapshots/'];
        const remaining: string[] = [];
        for (let i = 0; i < 6; i++) {
          const res = await request(limited.url)
            .get(paths[i % 2])
            .set(bearer(tokens[i % 2]));
          expect(res.status).toBe(200);
          expect(res.headers['ratelimit-limit']).toBe('6'); // the tightest limit
          remaining.push(res.headers['ratelimit-remaining']);
        }
        expect(remaining).toEqual(['5', '4', '3', '2', '1', '0']);
        for (const path of paths) {
          for (const token of tokens) {
            const over = await request(limited.url).get(path).set(bearer(token));
            expectProblem(over, 429, 'rate_limited');
            expect(over.body).toMatchObject({ limit: 6, limit_scope: 'account', limit_kind: 'requests' });
            expect(over.body.detail).toMatch(
              /^Too Many Requests - Rate limit of 6 requests per minute for this account exceeded/,
            );
            expect(Number(over.headers['retry-after'])).toBeGreaterThan(0);
          }
        }
        // Another account has its own allowance.
        const other = await caller();
        expect((await request(limited.url).get('/api/v1/snapshots/').set(other.auth)).status).toBe(200);
      } finally {
        await limited.close();
      }
    });

    it('requests of two tokens arriving together on the hot read path are counted exactly against the account', async () => {
      const limited = await startApi(
        testConfig(db, 'api', { RATE_LIMIT_PER_MINUTE: '100', RATE_LIMIT_ACCOUNT_PER_MINUTE: '10' }),
      );
      try {
        const p = await caller();
        const second = await createToken(api.prisma, p.account.id);
        await notNearMinuteEnd();
        const answers = await Promise.all(
          Array.from({ length: 16 }, (_, i) =>
            request(limited.url)
              .get('/api/v1/snapshots/')
              .set(bearer(i % 2 ? second.token : p.token)),
          ),
        );
        expect(answers.filter((a) => a.status === 200)).toHaveLength(10);
        const refused = answers.filter((a) => a.status === 429);
        expect(refused).toHaveLength(6);
        for (const r of refused) expect(r.body).toMatchObject({ limit_scope: 'account', limit: 10 });
      } finally {
        await limited.close();
      }
    });

    it('writes: the account write limit across tokens; the token limits still apply and are named', async () => {
      const limited = await startApi(
        testConfig(db, 'api', {
          RATE_LIMIT_PER_MINUTE: '4',
          RATE_LIMIT_WRITES_PER_MINUTE: '100',
          RATE_LIMIT_ACCOUNT_PER_MINUTE: '100',
          RATE_LIMIT_ACCOUNT_WRITES_PER_MINUTE: '2',
        }),
      );
      try {
        const p = await caller();
        const second = await createToken(api.prisma, p.account.id);
        const node = await createNode(api.prisma);
        const server = await createServer(api.prisma, p.account.id, node.id);
        await notNearMinuteEnd();
        // Two writes, one per token: a token create (pipeline) and a snapshot delete (the write front).
        expect((await mint(limited.url, p.auth, {})).status).toBe(201);
        const del = await request(limited.url).delete('/api/v1/snapshots/999999/').set(bearer(second.token));
        expect(del.status).toBe(404);
        const over = await request(limited.url)
          .post('/api/v1/snapshots/')
          .set(p.auth)
          .send({ server_id: server.id, name: 'over' });
        expectProblem(over, 429, 'rate_limited');
        expect(over.body).toMatchObject({ limit: 2, limit_scope: 'account', limit_kind: 'writes' });
        expect(over.body.detail).toMatch(/2 writes per minute for this account/);
        expect(await api.prisma.snapshot.count({ where: { serverId: server.id } })).toBe(0);
        // The first token has made 2 requests; 2 reads more reach its own limit of 4.
        for (let i = 0; i < 2; i++) await request(limited.url).get('/api/v1/servers/').set(p.auth);
        const tokenOver = await request(limited.url).get('/api/v1/servers/').set(p.auth);
        expectProblem(tokenOver, 429, 'rate_limited');
        expect(tokenOver.body).toMatchObject({ limit: 4, limit_scope: 'token', limit_kind: 'requests' });
        expect(tokenOver.body.detail).toMatch(/4 requests per minute for this token/);
      } finally {
        await limited.close();
      }
    });
  });
});
