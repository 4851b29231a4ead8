/** What the probes answer: response classes (the OpenAPI document's source). */
import { ApiProperty, ApiSchema } from '@nestjs/swagger';

export const DEPENDENCY_STATES = ['up', 'down'] as const;
type DependencyState = (typeof DEPENDENCY_STATES)[number];

@ApiSchema({ name: 'Health', description: 'The process is alive.' })
export class HealthView {
  @ApiProperty({ enum: ['ok'], example: 'ok' })
  status!: 'ok';
}

@ApiSchema({ name: 'ReadinessChecks', description: 'Each dependency, up or down.' })
export class ReadinessChecks {
  @ApiProperty({ enum: DEPENDENCY_STATES, example: 'up' })
  postgres!: DependencyState;

  @ApiProperty({ enum: DEPENDENCY_STATES, example: 'up' })
  redis!: DependencyState;
}

@ApiSchema({ name: 'Readiness', description: 'PostgreSQL and Redis answer.' })
export class ReadinessView {
  @ApiProperty({ enum: ['ready'], example: 'ready' })
  status!: 'ready';

  @ApiProperty({ type: ReadinessChecks })
  checks!: ReadinessChecks;
}
