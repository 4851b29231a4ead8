import { Injectable } from '@nestjs/common';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { TargetRefused, WebhookTargets } from './webhook-target';

export interface WebhookAnswer {
  status: number;
}

/** The one HTTP POST a delivery makes. Injected so tests can answer as a receiver would, or fail. */
export abstract class WebhookHttp {
  abstract post(
    url: URL,
    headers: Record<string, string>,
    body: string,
    timeoutMs: number,
  ): Promise<WebhookAnswer>;
}

/** At most this much of an answer's body is read (and then dropped): only the status counts. */
const ANSWER_BYTES_MAX = 64 * 1024;

/**
 * Node's http(s) client, connecting only to addresses the target rules allow: a literal address is
 * checked before the request, a name inside the socket's own lookup. Redirects are not followed (a
 * 3xx is a failed delivery), so a receiver cannot send the request on to an address it may not reach.
 */
@Injectable()
export class NodeWebhookHttp extends WebhookHttp {
  constructor(private readonly targets: WebhookTargets) {
    super();
  }

  post(url: URL, headers: Record<string, string>, body: string, timeoutMs: number): Promise<WebhookAnswer> {
    if (!this.targets.schemeAllowed(url)) return Promise.reject(new TargetRefused('scheme'));
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    if (isIP(host) && !this.targets.addressAllowed(host)) {
      return Promise.reject(new TargetRefused('address', host));
    }
    const client = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = client.request(
        url,
        {
          method: 'POST',
          headers: {
            ...headers,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            'user-agent': 'admin.vps.org-webhooks',
          },
          lookup: this.targets.guardedLookup() as never,
          timeout: timeoutMs,
        },
        (res) => {
          let read = 0;
          res.on('data', (chunk: Buffer) => {
            read += chunk.length;
            if (read > ANSWER_BYTES_MAX) res.destroy();
          });
          res.on('close', () => resolve({ status: res.statusCode ?? 0 }));
          res.on('error', () => resolve({ status: res.statusCode ?? 0 }));
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }
}
