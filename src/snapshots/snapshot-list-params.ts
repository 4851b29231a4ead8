import { PAGE_PARAMS } from '../common/pagination';

/**
 * The query parameters `GET /api/v1/snapshots/` reads (SnapshotsController.list, readPageRequest); it
 * ignores any other. The hot read path caches answers only for URLs made of these.
 */
export const SNAPSHOT_LIST_PARAMS: readonly string[] = ['server_id', 'ordering', ...PAGE_PARAMS];
