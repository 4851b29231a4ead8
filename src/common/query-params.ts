import { applyDecorators } from '@nestjs/common';
import { ApiPropertyOptional } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { getMetadataStorage, IsIn, IsOptional, ValidateBy } from 'class-validator';
import { parseId } from './ids';

/**
 * Decorators of query-string DTOs: each states a parameter's rule once, for the validation pipe and the
 * OpenAPI document alike. A query value arrives as text (or an array when repeated), so numbers are
 * read as path ids are (plain decimal digits only: "0x10" and "1e3" are refused, not converted).
 */

/** An integer parameter from 1 to `max`, written in plain digits. */
export function QueryInteger(o: {
  max: number;
  message: string;
  description: string;
  default?: number;
  example?: number;
}): PropertyDecorator {
  return applyDecorators(
    IsOptional(),
    Transform(({ value }: { value: unknown }) => parseId(value) ?? value),
    ValidateBy({
      name: 'queryInteger',
      validator: {
        validate: (v: unknown) => typeof v === 'number' && v >= 1 && v <= o.max,
        defaultMessage: () => o.message,
      },
    }),
    ApiPropertyOptional({
      type: 'integer',
      format: 'int32',
      minimum: 1,
      maximum: o.max,
      default: o.default,
      example: o.example,
      description: o.description,
    }),
  );
}

/** One of `values`. */
export function QueryOneOf(
  values: readonly string[],
  o: { message: string; description: string; default?: string; enumName?: string },
): PropertyDecorator {
  return applyDecorators(
    IsOptional(),
    IsIn(values, { message: o.message }),
    ApiPropertyOptional({
      type: String,
      enum: values as string[],
      enumName: o.enumName,
      default: o.default,
      description: o.description,
    }),
  );
}

/** The parameters a query DTO reads (its validated properties, its base classes' included). */
export function queryParamsOf(dto: new () => object): string[] {
  const metas = getMetadataStorage().getTargetValidationMetadatas(dto, '', true, false);
  return [...new Set(metas.map((m) => m.propertyName))];
}
