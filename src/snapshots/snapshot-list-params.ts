import { ServerResourceListQuery } from '../common/list-query';
import { queryParamsOf } from '../common/query-params';

/** The query string of `GET /api/v1/snapshots/` (SnapshotsController.list); any other parameter is ignored. */
export class SnapshotListQuery extends ServerResourceListQuery {}

/** The parameters SnapshotListQuery reads. The hot read path caches answers only for URLs made of these. */
export const SNAPSHOT_LIST_PARAMS: readonly string[] = queryParamsOf(SnapshotListQuery);
