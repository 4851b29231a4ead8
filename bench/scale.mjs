/* global performance */
// Target 4: the filtered list with 1,000,000 snapshots / 200,000 servers against the 10,000-server
// database, alternated in one run: HTTP latency (autocannon, few connections, so latency is not queueing)
// and the list's SQL timed directly, plus EXPLAIN (ANALYZE, BUFFERS) plans for the doc.
import autocannon from 'autocannon';
import pg from 'pg';
import { median, startRole, stop, quiet } from './lib.mjs';

/**
 * The SQL SnapshotsService.list sends (src/snapshots/snapshot.repository.ts), default ordering; no
 * accountId: an admin's list. `labels`: a label_selector's jsonpath (labelFilterOf).
 * @param {{ accountId?: number, serverId?: number, labels?: string, take?: number, skip?: number }} q
 */
export function listSql({ accountId, serverId, labels, take = 50, skip = 0 }) {
  const values = [];
  const param = (v) => `$${values.push(v)}`;
  const conds = ['s.deleted_at IS NULL'];
  if (accountId !== undefined) conds.push(`s.account_id = ${param(accountId)}`);
  const sid = serverId ? param(serverId) : null;
  if (sid) conds.push(`s.server_id = ${sid}`);
  if (labels !== undefined) conds.push(`s.labels @@ ${param(labels)}::jsonpath`);
  const where = conds.join(' AND ');
  const visible = sid ? `EXISTS (SELECT 1 FROM servers v WHERE v.id = ${sid} AND v.account_id = $1)` : 'true';
  const text = `SELECT c.total, c.visible, p.*
      FROM (SELECT (SELECT count(*)::int FROM snapshots s WHERE ${where}) AS total, ${visible} AS visible) c
      LEFT JOIN LATERAL (
        SELECT s.id, s.name, s.description, s.status::text AS status, s.progress, s.size_bytes,
               s.consistency::text AS consistency, s.error, s.created_at, s.completed_at,
               s.labels,
               v.id AS server_id, v.name AS server_name
        FROM snapshots s JOIN servers v ON v.id = s.server_id
        WHERE ${where}
        ORDER BY s.created_at DESC, s.id DESC
        LIMIT ${take} OFFSET ${skip}
      ) p ON true
      ORDER BY p.created_at DESC, p.id DESC`;
  return { text, values };
}

function cannon(opts) {
  return new Promise((resolve, reject) =>
    autocannon({ connections: 4, ...opts }, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

export async function scaleBench({ small, large, redisUrl, quick, dir, log = quiet }) {
  const rounds = quick ? 2 : 4;
  const duration = quick ? 2 : 5;
  const sides = [
    { name: 'small', ...small },
    { name: 'large', ...large },
  ];
  const out = { rounds, duration, sizes: {}, http: {}, sql: {}, plans: {} };
  for (const s of sides) {
    s.pool = new pg.Pool({ connectionString: s.url, max: 1 });
    const c = await s.pool.query(`SELECT (SELECT count(*) FROM servers)::int AS servers, (SELECT count(*) FROM snapshots)::int AS snapshots`);
    out.sizes[s.name] = c.rows[0];
    // Through the Nest pipeline (HOT_READ_PATH=false): this measures how the list's data path scales;
    // the hot read path would answer these repeated requests from its cache whatever the table size.
    s.api = await startRole(
      'api',
      { DATABASE_URL: s.url, REDIS_URL: redisUrl, QUEUE_PREFIX: `benchs${process.pid}`, HOT_READ_PATH: 'false' },
      dir,
    );
  }
  const cases = [
    { name: 'filtered list', q: (s) => ({ accountId: 1, serverId: s.seed.benchServerId }), path: (s) => `/api/v1/snapshots/?server_id=${s.seed.benchServerId}` },
    { name: 'account-wide first page', q: () => ({ accountId: 1 }), path: () => `/api/v1/snapshots/` },
  ];
  try {
    for (const c of cases) {
      out.http[c.name] = { small: [], large: [] };
      out.sql[c.name] = { small: [], large: [] };
      for (const s of sides) {
        const q = listSql(c.q(s));
        const plan = await s.pool.query(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ${q.text}`, q.values);
        out.plans[`${c.name} — ${s.name}`] = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
        await cannon({ url: s.api.base + c.path(s), headers: { authorization: `Bearer ${s.seed.tokens.bench}` }, duration: 1 });
      }
    }
    for (let round = 0; round < rounds; round++) {
      log(`scale round ${round + 1}/${rounds}`);
      for (const c of cases) {
        const order = round % 2 ? [...sides].reverse() : sides;
        for (const s of order) {
          const res = await cannon({
            url: s.api.base + c.path(s),
            headers: { authorization: `Bearer ${s.seed.tokens.bench}` },
            duration,
          });
          out.http[c.name][s.name].push({ p50: res.latency.p50, p99: res.latency.p99, rps: res.requests.average, non2xx: res.non2xx });
          // The SQL alone, 200 executions, median (server-side time as the client sees it).
          const q = listSql(c.q(s));
          const times = [];
          for (let i = 0; i < (quick ? 30 : 200); i++) {
            const t0 = performance.now();
            await s.pool.query(q.text, q.values);
            times.push(performance.now() - t0);
          }
          out.sql[c.name][s.name].push(median(times));
        }
      }
    }
  } finally {
    for (const s of sides) {
      await stop(s.api?.child);
      await s.pool.end();
    }
  }
  out.summary = cases.map((c) => {
    const h = out.http[c.name];
    const q = out.sql[c.name];
    return {
      case: c.name,
      httpP50Small: median(h.small.map((x) => x.p50)),
      httpP50Large: median(h.large.map((x) => x.p50)),
      httpRatio: median(h.large.map((x, i) => x.p50 / h.small[i].p50)),
      rpsRatio: median(h.large.map((x, i) => x.rps / h.small[i].rps)),
      sqlMsSmall: median(q.small),
      sqlMsLarge: median(q.large),
      sqlRatio: median(q.large.map((x, i) => x / q.small[i])),
    };
  });
  return out;
}
