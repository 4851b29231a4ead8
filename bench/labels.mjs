/* global performance */
// Label selectors on 1,000,000 snapshots (200,000 servers): the snapshot list with a `label_selector`
// against the same list without one, alternated in one run, over HTTP (autocannon, few connections) and
// as SQL timed directly; then the SQL again under the migration's label index, the labels-only index it
// replaced and no label index, plus EXPLAIN plans for the doc.
import autocannon from 'autocannon';
import { createRequire } from 'node:module';
import path from 'node:path';
import pg from 'pg';
import { median, seed, startRole, stop } from './lib.mjs';
import { listSql } from './scale.mjs';

/** env: prod 10%, staging 20%, dev 70%; tier: db, cache, web in turn; `temp` on 1 in 100. */
const SNAPSHOT_LABELS = `jsonb_build_object(
  'env', CASE WHEN (s.id + k) % 10 = 0 THEN 'prod' WHEN (s.id + k) % 10 < 3 THEN 'staging' ELSE 'dev' END,
  'tier', (ARRAY['db', 'cache', 'web'])[1 + (s.id * 7 + k) % 3],
  'team.example.com/owner', 'team-' || (s.id % 50)
) || CASE WHEN (s.id + k) % 100 = 1 THEN '{"temp": ""}'::jsonb ELSE '{}'::jsonb END`;

const SELECTORS = [
  'env=prod',
  'env=prod,tier in (db,cache),!temp',
  'team.example.com/owner=team-7',
  'env!=dev',
];

/**
 * The label index variants timed after the main rounds: the migration's own definition (read back from
 * the database, so the bench follows the migration), the labels-only index it replaced, and none.
 */
const OTHER_INDEXES = {
  'labels only (jsonb_path_ops)': `CREATE INDEX snapshots_labels_idx ON snapshots USING GIN (labels jsonb_path_ops) WHERE deleted_at IS NULL`,
  none: null,
};

function cannon(opts) {
  return new Promise((resolve, reject) =>
    autocannon({ connections: 4, ...opts }, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

async function sqlMs(pool, q, n) {
  const times = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await pool.query(q.text, q.values);
    times.push(performance.now() - t0);
  }
  return median(times);
}

export async function labelsBench({ url, redisUrl, quick, dir, log }) {
  const big = quick ? { servers: 20_000, snapshots: 100_000 } : { servers: 200_000, snapshots: 1_000_000 };
  log(`seeding ${big.servers} servers / ${big.snapshots} labelled snapshots`);
  const s = await seed(url, { ...big, snapshotLabels: SNAPSHOT_LABELS });
  // The selectors as the API compiles them (the build's own parser).
  const { labelFilterOf } = createRequire(import.meta.url)(path.join(dir, 'dist/labels/label-selector.js'));
  const rounds = quick ? 2 : 4;
  const duration = quick ? 2 : 4;
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  const sizes = (
    await pool.query(`SELECT count(*)::int AS snapshots, (SELECT count(*) FROM servers)::int AS servers,
    (SELECT count(*) FROM snapshots WHERE account_id = 1)::int AS account1 FROM snapshots`)
  ).rows[0];
  const api = await startRole(
    'api',
    { DATABASE_URL: url, REDIS_URL: redisUrl, QUEUE_PREFIX: `benchl${process.pid}`, HOT_READ_PATH: 'false' },
    dir,
  );
  // An account's list (its 5,000 of the million) and an admin's list of all of them.
  const scopes = [
    { name: 'account', token: s.tokens.bench, accountId: 1 },
    { name: 'admin (all)', token: s.tokens.admin, accountId: undefined },
  ];
  const out = { rounds, duration, sizes, http: {}, sql: {}, plans: {}, opclass: {} };
  const migrationIndex = (
    await pool.query(`SELECT indexdef FROM pg_indexes WHERE indexname = 'snapshots_labels_idx'`)
  ).rows[0].indexdef;
  const INDEXES = { migration: migrationIndex, ...OTHER_INDEXES };
  try {
    for (const sc of scopes) {
      for (const sel of [null, ...SELECTORS]) {
        const name = `${sc.name}: ${sel ?? 'no selector'}`;
        out.http[name] = [];
        out.sql[name] = [];
        const labels = sel === null ? undefined : labelFilterOf(sel);
        const q = listSql({ accountId: sc.accountId, labels });
        const plan = await pool.query(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ${q.text}`, q.values);
        out.plans[name] = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
        const match = await pool.query(q.text, q.values);
        out.sql[name].count = match.rows[0]?.total;
        await cannon({ url: api.base + pathOf(sel), headers: auth(sc), duration: 1 });
      }
    }
    for (let round = 0; round < rounds; round++) {
      log(`labels round ${round + 1}/${rounds}`);
      for (const sc of scopes) {
        const order = [null, ...SELECTORS];
        if (round % 2) order.reverse();
        for (const sel of order) {
          const name = `${sc.name}: ${sel ?? 'no selector'}`;
          const res = await cannon({ url: api.base + pathOf(sel), headers: auth(sc), duration });
          if (res.non2xx) throw new Error(`${name}: ${res.non2xx} non-2xx answers`);
          out.http[name].push({ p50: res.latency.p50, rps: res.requests.average });
          const q = listSql({
            accountId: sc.accountId,
            labels: sel === null ? undefined : labelFilterOf(sel),
          });
          out.sql[name].push(await sqlMs(pool, q, quick ? 5 : 15));
        }
      }
    }
    // The operator classes, SQL only: the same queries with each index in turn.
    for (const [opclass, ddl] of Object.entries(INDEXES)) {
      log(`labels: index ${opclass}`);
      await pool.query('DROP INDEX IF EXISTS snapshots_labels_idx');
      const t0 = performance.now();
      if (ddl) await pool.query(ddl);
      const buildMs = performance.now() - t0;
      const size = ddl
        ? (await pool.query(`SELECT pg_relation_size('snapshots_labels_idx')::bigint AS b`)).rows[0].b
        : 0;
      await pool.query('ANALYZE snapshots');
      const r = { buildMs, bytes: Number(size), ms: {} };
      for (const sc of scopes) {
        for (const sel of SELECTORS) {
          const q = listSql({ accountId: sc.accountId, labels: labelFilterOf(sel) });
          r.ms[`${sc.name}: ${sel}`] = await sqlMs(pool, q, quick ? 5 : 9);
        }
      }
      out.opclass[opclass] = r;
    }
  } finally {
    await pool.query('DROP INDEX IF EXISTS snapshots_labels_idx').catch(() => undefined);
    await pool.query(migrationIndex).catch(() => undefined);
    await pool.end();
    await stop(api.child);
  }
  out.summary = [];
  for (const sc of scopes) {
    const plain = `${sc.name}: no selector`;
    for (const sel of SELECTORS) {
      const name = `${sc.name}: ${sel}`;
      const h = out.http[name];
      const p = out.http[plain];
      out.summary.push({
        case: name,
        matches: out.sql[name].count,
        httpP50Plain: median(p.map((x) => x.p50)),
        httpP50: median(h.map((x) => x.p50)),
        httpRatio: median(h.map((x, i) => x.p50 / p[i].p50)),
        httpRatioMax: Math.max(...h.map((x, i) => x.p50 / p[i].p50)),
        rpsRatio: median(h.map((x, i) => x.rps / p[i].rps)),
        sqlMsPlain: median(out.sql[plain]),
        sqlMs: median(out.sql[name]),
        sqlRatio: median(out.sql[name].map((x, i) => x / out.sql[plain][i])),
        sqlRatioMax: Math.max(...out.sql[name].map((x, i) => x / out.sql[plain][i])),
      });
    }
  }
  return out;

  function pathOf(sel) {
    return sel === null
      ? '/api/v1/snapshots/'
      : `/api/v1/snapshots/?label_selector=${encodeURIComponent(sel)}`;
  }
  function auth(sc) {
    return { authorization: `Bearer ${sc.token}` };
  }
}
