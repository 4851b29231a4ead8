import { ServerResourceListQuery } from '../common/list-query';
import { QueryOneOf } from '../common/query-params';
import { BackupKind } from '../generated/prisma/enums';

const KINDS = Object.values(BackupKind);

/** The query string of `GET /api/v1/backups/` (BackupsController.list); any other parameter is ignored. */
export class BackupListQuery extends ServerResourceListQuery {
  @QueryOneOf(KINDS, {
    message: `kind must be one of ${KINDS.join(', ')}`,
    description: 'Only manual or only automatic backups.',
    enumName: 'BackupKind',
  })
  kind?: BackupKind;
}
