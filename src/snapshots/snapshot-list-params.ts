import { PageQuery } from '../common/pagination';
import { MAX_ID } from '../common/ids';
import { QueryInteger, QueryOneOf, queryParamsOf } from '../common/query-params';
import { SNAPSHOT_ORDERINGS, SnapshotOrdering } from './snapshot.repository';

/** The query string of `GET /api/v1/snapshots/` (SnapshotsController.list); any other parameter is ignored. */
export class SnapshotListQuery extends PageQuery {
  @QueryInteger({
    max: MAX_ID,
    message: 'server_id must be a positive integer',
    description: 'Filter snapshots by server id.',
    example: 12345,
  })
  server_id?: number;

  @QueryOneOf(SNAPSHOT_ORDERINGS, {
    message: `ordering must be one of ${SNAPSHOT_ORDERINGS.join(', ')}`,
    description: 'Sort order; `-` means descending.',
    default: '-created_at',
  })
  ordering: SnapshotOrdering = '-created_at';
}

/** The parameters SnapshotListQuery reads. The hot read path caches answers only for URLs made of these. */
export const SNAPSHOT_LIST_PARAMS: readonly string[] = queryParamsOf(SnapshotListQuery);
