import type { IncomingMessage, ServerResponse } from 'node:http';

/** A header of a captured answer whose value a replay takes from its own request. */
export type OwnHeader = 'x-request-id' | 'ratelimit-limit' | 'ratelimit-remaining' | 'ratelimit-reset';

/**
 * The headers of one status of a replayed answer, built once when the answer is captured: names and
 * values as `writeHead` takes them (name, value, name, value, …), and the value slots each replay fills
 * with its own request's values (a replay fills those slots, hands the list to `writeHead`, which
 * serialises it at once, and empties them again: no copy per request).
 */
export interface ReplayHead {
  flat: string[];
  own: { at: number; header: OwnHeader }[];
}

/** A 200 answer of the Nest pipeline, as the hot read path replays it to the requests that waited for it. */
export interface CapturedAnswer {
  /** The 200: the pipeline's raw header names and values in the order they were set, then Content-Length. */
  ok: ReplayHead;
  /** The 304 to a matching If-None-Match: the same headers without Content-Type and Content-Length. */
  notModified: ReplayHead;
  /** Whether the answer carries rate-limit headers (a replay replaces them, never adds or drops them). */
  rateHeaders: boolean;
  body: Buffer;
  /** The answer's ETag; null on routes without conditional answers. */
  etag: string | null;
  /** The metrics route label (route template) of the answer. */
  route: string;
}

/**
 * The leader of a group of identical requests (src/read-path/hot-read-path.ts): where the pipeline
 * delivers its 200 answer (answerMiddleware), to be shared with the requests that waited for it.
 */
export interface HotReadState {
  capture: (res: ServerResponse, body: Buffer, etag: string | null) => void;
}

const STATE = Symbol('hotRead');

export function setHotReadState(req: IncomingMessage, state: HotReadState): void {
  (req as unknown as Record<symbol, HotReadState>)[STATE] = state;
}

export function hotReadStateOf(req: IncomingMessage): HotReadState | undefined {
  return (req as unknown as Record<symbol, HotReadState | undefined>)[STATE];
}
