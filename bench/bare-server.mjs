/* global Buffer */
// The physical limit of the read benchmark: a bare node:http server answering each path with the exact
// bytes (status, content type, body) the API gave, from its own process. argv[2] = JSON file of
// { "<path>": { "type": "...", "body": "<base64>", "etag": "..." } }.
import http from 'node:http';
import fs from 'node:fs';

const routes = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
for (const r of Object.values(routes)) r.buf = Buffer.from(r.body, 'base64');
const server = http.createServer((req, res) => {
  const r = routes[req.url];
  if (!r) {
    res.writeHead(404).end();
    return;
  }
  if (r.etag && req.headers['if-none-match'] === r.etag) {
    res.writeHead(304, { ETag: r.etag }).end();
    return;
  }
  const headers = { 'Content-Type': r.type, 'Content-Length': r.buf.length };
  if (r.etag) headers.ETag = r.etag;
  res.writeHead(200, headers).end(r.buf);
});
server.keepAliveTimeout = 5000;
server.listen(0, '127.0.0.1', () => process.stdout.write(`${/** @type {import('node:net').AddressInfo} */ (server.address()).port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
