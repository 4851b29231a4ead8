// Whether helmet's per-request work pays to be done once: helmet()'s middleware against its own headers
// captured once and set from an array, on real ServerResponse objects, 8 alternated rounds of 50,000;
// prints ns per response (the bare ServerResponse construction subtracted) and the per-round ratios.
// node bench/helmet-once.mjs
import helmet from 'helmet';
import http from 'node:http';
import net from 'node:net';

const api = helmet();
/** @type {[string, string][]} */
const fixed = [];
const recorder = { setHeader: (n, v) => fixed.push([n, String(v)]), removeHeader: () => {}, getHeader: () => undefined };
api(/** @type {any} */ ({ url: '/' }), /** @type {any} */ (recorder), () => {});
/** @type {(req: any, res: http.ServerResponse, next: () => void) => void} */
const once = (_req, res, next) => {
  for (const [n, v] of fixed) res.setHeader(n, v);
  next();
};
const N = 50_000;
function run(mw) {
  const req = new http.IncomingMessage(new net.Socket());
  req.url = '/api/v1/actions/1/';
  req.method = 'GET';
  const t = process.hrtime.bigint();
  for (let i = 0; i < N; i++) mw(req, new http.ServerResponse(req), () => {});
  return Number(process.hrtime.bigint() - t) / N;
}
const bare = run((_req, _res, next) => next());
const r = { helmet: /** @type {number[]} */ ([]), once: /** @type {number[]} */ ([]) };
for (let round = 0; round < 8; round++) {
  const order = round % 2 ? /** @type {const} */ (['once', 'helmet']) : /** @type {const} */ (['helmet', 'once']);
  for (const k of order) r[k].push(run(k === 'helmet' ? api : once) - bare);
}
const med = (xs) => xs.slice().sort((a, b) => a - b)[xs.length >> 1];
console.log(
  JSON.stringify({
    headers: fixed.length,
    helmetNs: Math.round(med(r.helmet)),
    onceNs: Math.round(med(r.once)),
    helmetOverOnce: Number((med(r.helmet) / med(r.once)).toFixed(2)),
    rounds: r.helmet.map((h, i) => Number((h / r.once[i]).toFixed(2))),
  }),
);
