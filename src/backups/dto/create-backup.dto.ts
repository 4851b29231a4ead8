import { DescriptionField, NameField, ServerIdField } from '../../common/resource-fields';
import { Labels, LabelsField } from '../../labels/labels';

export class CreateBackupDto {
  @ServerIdField('Id of the server to back up.', { example: 12345 })
  server_id!: number;

  @NameField(
    'nightly-2025-01-15',
    'Name for the backup (letters, digits, hyphens, underscores; need not be unique).',
  )
  name!: string;

  @DescriptionField('Before the database upgrade')
  description?: string;

  @LabelsField({ optional: true, description: 'Labels of the backup (omitted = none).' })
  labels?: Labels;
}

export class RestoreBackupDto {
  @ServerIdField(
    "The server to restore onto: another server of the same account, on any node (default: the backup's own).",
    { optional: true },
  )
  server_id?: number;
}
