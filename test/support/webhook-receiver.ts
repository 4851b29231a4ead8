/** A webhook receiver on loopback for tests and the bench: records every request; `answer` picks the status. */
import http from 'node:http';
import { AddressInfo } from 'node:net';

export interface ReceivedHook {
  headers: Record<string, string>;
  body: string;
  at: number;
  /** The status it was answered with. */
  status: number;
}

export interface Receiver {
  url: string;
  received: ReceivedHook[];
  /** The status of the next answer (200 by default). */
  answer: (hook: Omit<ReceivedHook, 'status'>) => number;
  close(): Promise<void>;
}

export async function startReceiver(path = '/hook'): Promise<Receiver> {
  const received: ReceivedHook[] = [];
  const receiver = { received, answer: () => 200 } as unknown as Receiver;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const request = {
        headers: Object.fromEntries(
          Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : (v ?? '')]),
        ),
        body: Buffer.concat(chunks).toString('utf8'),
        at: Date.now(),
      };
      const hook = { ...request, status: receiver.answer(request) };
      received.push(hook);
      res.writeHead(hook.status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;
  receiver.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return receiver;
}
