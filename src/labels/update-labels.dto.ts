import { Labels, LabelsField } from './labels';

/** The body of `PATCH /api/v1/<snapshots|backups|servers>/{id}/`. */
export class UpdateLabelsDto {
  @LabelsField({ optional: false, description: 'The new labels: they replace the old ones as a whole.' })
  labels!: Labels;
}
