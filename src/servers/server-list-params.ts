import { PageQuery } from '../common/pagination';
import { QueryLabelSelector } from '../labels/label-selector';

/** The query string of `GET /api/v1/servers/` (ServersController.list); any other parameter is ignored. */
export class ServerListQuery extends PageQuery {
  @QueryLabelSelector('servers')
  label_selector?: string;
}
