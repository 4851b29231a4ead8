import { ArgumentMetadata, ValidationError, ValidationPipe } from '@nestjs/common';
import { FieldError, problems } from './problem';

function flatten(errors: ValidationError[], parent = ''): FieldError[] {
  const out: FieldError[] = [];
  for (const e of errors) {
    const field = parent ? `${parent}.${e.property}` : e.property;
    for (const msg of Object.values(e.constraints ?? {})) out.push({ field, message: msg });
    if (e.children?.length) out.push(...flatten(e.children, field));
  }
  return out;
}

const COMMON = {
  transform: true,
  transformOptions: { enableImplicitConversion: false },
  validationError: { target: false, value: false },
  exceptionFactory: (errors: ValidationError[]) => problems.validation(flatten(errors)),
} as const;

/**
 * Bodies and query strings, each by its DTO class. A body member the DTO does not know is refused; a
 * query parameter it does not know is ignored (links and caches add their own). Path parameters reach
 * their own pipes (`PathIdPipe`) as the raw text the client sent: the stock pipe would turn "0x10" into
 * 16 and "1e3" into 1000 before they could be refused.
 */
class RequestValidationPipe extends ValidationPipe {
  private readonly queries = new ValidationPipe({ ...COMMON, whitelist: true, forbidNonWhitelisted: false });

  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    if (metadata.type === 'param') return value;
    if (metadata.type === 'query') return this.queries.transform(value, metadata);
    return super.transform(value, metadata);
  }
}

/** Whitelisting, transforming validation whose failures are 400 `validation_failed` with field errors. */
export function createValidationPipe(): ValidationPipe {
  return new RequestValidationPipe({ ...COMMON, whitelist: true, forbidNonWhitelisted: true });
}
