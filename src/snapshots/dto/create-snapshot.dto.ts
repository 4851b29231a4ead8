import { DescriptionField, NameField, ServerIdField } from '../../common/resource-fields';

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
}
