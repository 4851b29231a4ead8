import { applyDecorators } from '@nestjs/common';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsInt, IsString, Matches, Max, Min, ValidateIf } from 'class-validator';
import { MAX_ID } from './ids';

/**
 * The body fields snapshots and backups share, each rule with its message in one place: Part 1's name
 * and description rules and a server id.
 */

export const RESOURCE_NAME_MAX = 64;
export const RESOURCE_NAME = new RegExp(`^[A-Za-z0-9_-]{1,${RESOURCE_NAME_MAX}}$`);
export const RESOURCE_NAME_MESSAGE = `name must be 1-${RESOURCE_NAME_MAX} letters, digits, hyphens or underscores`;
export const DESCRIPTION_MAX = 1000;

/** A server id; `optional`: absent is allowed (null is a wrong type, as is any non-integer). */
export function ServerIdField(description: string, opts: { optional?: boolean; example?: number } = {}) {
  const doc = {
    type: 'integer' as const,
    format: 'int32',
    minimum: 1,
    maximum: MAX_ID,
    example: opts.example,
    description,
  };
  return applyDecorators(
    ...(opts.optional ? [ValidateIf((o: { server_id?: unknown }) => o.server_id !== undefined)] : []),
    IsInt({ message: 'server_id must be an integer' }),
    Min(1, { message: 'server_id must be a positive integer' }),
    Max(MAX_ID, { message: `server_id must not exceed ${MAX_ID}` }),
    opts.optional ? ApiPropertyOptional(doc) : ApiProperty(doc),
  );
}

/** A name: 1-64 letters, digits, hyphens or underscores (names need not be unique). */
export function NameField(example: string, description: string) {
  return applyDecorators(
    IsString({ message: 'name must be a string' }),
    Matches(RESOURCE_NAME, { message: RESOURCE_NAME_MESSAGE }),
    ApiProperty({
      pattern: RESOURCE_NAME.source,
      minLength: 1,
      maxLength: RESOURCE_NAME_MAX,
      example,
      description,
    }),
  );
}

/** An optional description of at most DESCRIPTION_MAX characters (omitted = ""). */
export function DescriptionField(example: string) {
  return applyDecorators(
    // Only an absent description is "none": null is a wrong type, as is any other non-string.
    ValidateIf((o: { description?: unknown }) => o.description !== undefined),
    IsString({ message: 'description must be a string' }),
    // PostgreSQL text cannot hold NUL.
    // eslint-disable-next-line no-control-regex
    Matches(/^[^\u0000]*$/, { message: 'description must not contain NUL characters' }),
    // Characters are code points, as PostgreSQL counts them (MaxLength would not count U+FE0F).
    Matches(new RegExp(`^[\\s\\S]{0,${DESCRIPTION_MAX}}$`, 'u'), {
      message: `description must be at most ${DESCRIPTION_MAX} characters`,
    }),
    ApiPropertyOptional({
      maxLength: DESCRIPTION_MAX,
      example,
      description: 'Optional description (omitted = "").',
    }),
  );
}
