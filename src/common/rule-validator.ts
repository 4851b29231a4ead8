import { ValidateBy, ValidationOptions } from 'class-validator';

/**
 * A class-validator rule made of a domain rule function (`…Problem(value)`: the sentence that says
 * what is wrong, or null), so a DTO and the service behind it (which the CLI calls too) apply the same
 * rule with the same message.
 */
export function SatisfiesRule(
  problem: (value: unknown) => string | null,
  options?: ValidationOptions,
): PropertyDecorator {
  return ValidateBy(
    {
      name: 'satisfiesRule',
      validator: {
        validate: (value: unknown) => problem(value) === null,
        defaultMessage: (args) => problem(args?.value) ?? 'invalid value',
      },
    },
    options,
  );
}
