/** What the token endpoints answer: response classes (the OpenAPI document's source) and their builders. */
import { ApiProperty, ApiSchema } from '@nestjs/swagger';
import { apiTime } from '../common/clock';
import { PageOf } from '../common/pagination';
import { DATE_TIME, ID } from '../openapi/properties';
import type { TokenRecord } from './api-token.service';
import { TOKEN_NAME_MAX } from './dto/create-token.dto';
import { SCOPES } from './principal';
import { TOKEN_SHAPE } from './token-codec';

@ApiSchema({ name: 'Token', description: 'An API token (never its secret, which is shown once).' })
export class TokenView {
  @ApiProperty({ ...ID, example: 3 })
  id!: number;

  @ApiProperty({ example: 'deploy pipeline', minLength: 1, maxLength: TOKEN_NAME_MAX })
  name!: string;

  @ApiProperty({ example: 'vps_AbCdEfGh', description: 'The first 12 characters, to recognise it.' })
  prefix!: string;

  @ApiProperty({ enum: SCOPES, enumName: 'Scope', isArray: true, example: ['read', 'write'] })
  scopes!: string[];

  @ApiProperty(DATE_TIME)
  created_at!: string;

  @ApiProperty({ ...DATE_TIME, nullable: true, example: null })
  expires_at!: string | null;

  @ApiProperty({ ...DATE_TIME, nullable: true, description: 'Written at most once a minute.' })
  last_used_at!: string | null;

  @ApiProperty({ ...DATE_TIME, nullable: true, example: null })
  revoked_at!: string | null;
}

@ApiSchema({ name: 'TokenCreated', description: 'A new token, with its secret (shown this once only).' })
export class TokenCreatedView extends TokenView {
  @ApiProperty({
    example: 'vps_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789ABCD',
    pattern: TOKEN_SHAPE.source,
    description: '`vps_` and 40 base62 characters. Store it now: only its hash is kept.',
  })
  token!: string;
}

export const TokenPage = PageOf(TokenView, {
  description: 'The account’s tokens (one page holds them all).',
});

export function tokenView(t: TokenRecord): TokenView {
  return {
    id: t.id,
    name: t.name,
    prefix: t.prefix,
    scopes: t.scopes,
    created_at: apiTime(t.createdAt),
    expires_at: apiTime(t.expiresAt),
    last_used_at: apiTime(t.lastUsedAt),
    revoked_at: apiTime(t.revokedAt),
  };
}

export function tokenCreatedView(t: TokenRecord, token: string): TokenCreatedView {
  return { ...tokenView(t), token };
}

/** What the audit log records of a new token, whoever made it (API or CLI): what it may do, until when. */
export function tokenAuditDetail(view: Pick<TokenView, 'scopes' | 'expires_at'>) {
  return { scopes: view.scopes, expires_at: view.expires_at };
}
