/**
 * Delete protection, shared by snapshots and backups: the response field, the change's request body and
 * the refusal every delete path answers. The rule itself is enforced in SQL (the delete functions and a
 * CHECK constraint, prisma/migrations/20261208020000_delete_protection), so no path can bypass it.
 */
import { ApiProperty, ApiSchema } from '@nestjs/swagger';
import { IsBoolean } from 'class-validator';
import { ProblemException } from './problem';

@ApiSchema({ name: 'Protection', description: 'What the resource is protected against.' })
export class ProtectionView {
  @ApiProperty({
    example: false,
    description:
      'While true, every delete is refused with 400 `protected`, retention included. Changed only through ' +
      '`actions/change_protection/`.',
  })
  delete!: boolean;
}

export class ChangeProtectionDto {
  @IsBoolean({ message: 'delete must be true or false' })
  @ApiProperty({
    example: true,
    description: 'Protect against deletion (true) or lift the protection (false).',
  })
  delete!: boolean;
}

export function protectionView(deleteProtected: boolean): ProtectionView {
  return { delete: deleteProtected };
}

/** A delete refused because the resource is protected (400, as Part 1 answers every invalid state). */
export function deleteProtected(resource: 'snapshot' | 'backup', id: number): ProblemException {
  return new ProblemException({
    status: 400,
    code: 'protected',
    params: { [`${resource}_id`]: id },
  });
}
