import { DescriptionField, NameField, ServerIdField } from '../../common/resource-fields';
import { Labels, LabelsField } from '../../labels/labels';

export class CreateSnapshotDto {
  @ServerIdField('Id of the server to snapshot.', { example: 12345 })
  server_id!: number;

  @NameField(
    'before-update-snapshot',
    'Name for the snapshot (letters, digits, hyphens, underscores; need not be unique).',
  )
  name!: string;

  @DescriptionField('Snapshot before system update')
  description?: string;

  @LabelsField({ optional: true, description: 'Labels of the snapshot (omitted = none).' })
  labels?: Labels;
}
