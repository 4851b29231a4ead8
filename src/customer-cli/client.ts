/**
 * The typed API client of the customer CLI: `openapi-fetch` over the types `openapi-typescript`
 * generates from the OpenAPI document at build time (src/generated/openapi/schema.d.ts).
 */
import createClient, { type Client } from 'openapi-fetch';
import { randomUUID } from 'node:crypto';
import type { components, paths } from '../generated/openapi/schema';

export type Schemas = components['schemas'];
export type Problem = Schemas['Problem'];
export type ApiClient = Client<paths>;

/** A request the service refused (problem details), or one that never got an answer. */
export class ApiError extends Error {
  constructor(
    message: string,
    /** The problem's `code`, or `network_error` / `http_<status>` when there is no problem body. */
    readonly code: string,
    readonly status: number | null,
    readonly problem: Problem | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** One line: `<detail> (<code>)`, then the field errors of a validation problem. */
  oneLine(): string {
    const fields = (this.problem?.errors ?? []).map((e) => `${e.field}: ${e.message}`);
    return `${this.message} (${this.code})${fields.length ? `: ${fields.join('; ')}` : ''}`;
  }
}

export interface ClientOptions {
  baseUrl: string;
  token: string;
  /** `cy` for Welsh messages and error details. */
  language?: string;
  userAgent?: string;
}

/** Retries a request on a network error, 502/503/504 (GET only) or 429 (any method: nothing was done). */
const RETRIES = 3;

function retryDelayMs(response: Response | null, attempt: number): number {
  const after = Number(response?.headers.get('retry-after'));
  if (Number.isFinite(after) && after > 0) return Math.min(after, 30) * 1000;
  return 250 * 2 ** attempt;
}

export function createApiClient(options: ClientOptions): ApiClient {
  const client = createClient<paths>({
    baseUrl: options.baseUrl.replace(/\/+$/, ''),
    headers: {
      Authorization: `Bearer ${options.token}`,
      'User-Agent': options.userAgent ?? 'vps-cli',
      ...(options.language ? { 'Accept-Language': options.language } : {}),
    },
    fetch: async (input: Request) => {
      // Create and restore carry an Idempotency-Key, so a retried POST starts nothing twice.
      if (input.method === 'POST' && !input.headers.has('idempotency-key')) {
        input.headers.set('Idempotency-Key', randomUUID());
      }
      for (let attempt = 0; ; attempt++) {
        let response: Response | null = null;
        try {
          response = await fetch(input.clone());
        } catch (e) {
          if (input.method !== 'GET' || attempt >= RETRIES) throw e;
        }
        if (response) {
          const transient =
            response.status === 429 || (input.method === 'GET' && [502, 503, 504].includes(response.status));
          if (!transient || attempt >= RETRIES) return response;
        }
        await new Promise((r) => setTimeout(r, retryDelayMs(response, attempt)));
      }
    },
  });
  return client;
}

function isProblem(body: unknown): body is Problem {
  return typeof body === 'object' && body !== null && 'code' in body && 'detail' in body;
}

/**
 * Unwraps an openapi-fetch result: the data of a success, else an `ApiError` from the problem details
 * (or from the bare status when the body is not a problem, e.g. a proxy's error page).
 */
export async function call<T>(
  baseUrl: string,
  request: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  let result: { data?: T; error?: unknown; response: Response };
  try {
    result = await request;
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (e instanceof Error ? e.message : String(e));
    throw new ApiError(`cannot reach ${baseUrl}: ${why}`, 'network_error', null);
  }
  const { data, error, response } = result;
  if (response.ok) return data as T;
  if (isProblem(error)) throw new ApiError(error.detail, error.code, response.status, error);
  throw new ApiError(
    `${response.status} ${response.statusText || 'error'} from ${baseUrl}`,
    `http_${response.status}`,
    response.status,
  );
}
