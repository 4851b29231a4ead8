/**
 * Property options that response classes share, so that an id or a timestamp is described once.
 * Spread them into `@ApiProperty({...ID, example: 801})`.
 */
import { MAX_ID } from '../common/ids';

/** A resource id: an integer from 1 to 2^31-1. */
export const ID = { type: 'integer', format: 'int32', minimum: 1, maximum: MAX_ID } as const;

/** A UTC timestamp as `apiTime` writes it: ISO 8601, second precision, `Z`. */
export const DATE_TIME = { type: String, format: 'date-time', example: '2025-01-15T18:30:00Z' } as const;

/** A percentage (progress of a copy). */
export const PERCENT = { type: 'integer', format: 'int32', minimum: 0, maximum: 100 } as const;

/** A count of things (never negative). */
export const COUNT = { type: 'integer', format: 'int32', minimum: 0 } as const;
