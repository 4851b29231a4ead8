import type { IncomingMessage, ServerResponse } from 'node:http';

/** A 200 answer of the Nest pipeline, as the hot read path replays it to the requests that waited for it. */
/** How a header of a captured answer is replayed: as it was, or filled in from the replaying request. */
export type HeaderPart =
  'as-is' | 'content-type' | 'x-request-id' | 'ratelimit-limit' | 'ratelimit-remaining' | 'ratelimit-reset';

export interface CapturedAnswer {
  /** Raw header names and values in the order they were set, each with how it is replayed. */
  headers: { name: string; value: string; part: HeaderPart }[];
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
