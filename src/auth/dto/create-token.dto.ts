import { ArrayUnique, IsArray, IsIn, IsInt, IsOptional, IsString, Length, Max, Min } from 'class-validator';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { SCOPES, Scope } from '../principal';

export const TOKEN_NAME_MAX = 100;
export const TOKEN_DAYS_MAX = 3650;

export class CreateTokenDto {
  @IsString()
  @Length(1, TOKEN_NAME_MAX)
  @ApiProperty({
    minLength: 1,
    maxLength: TOKEN_NAME_MAX,
    example: 'deploy pipeline',
    description: 'What the token is for.',
  })
  name!: string;

  @IsOptional()
  @IsArray()
  @ArrayUnique()
  @IsIn(SCOPES, { each: true })
  @ApiPropertyOptional({
    enum: SCOPES,
    enumName: 'Scope',
    isArray: true,
    uniqueItems: true,
    description:
      'What it may do: some of the calling token’s own scopes (an admin token may give any). ' +
      'Omitted: the calling token’s scopes.',
  })
  scopes?: Scope[];

  /** Lifetime in days; omitted = the calling token's expiry (none if it has none). */
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(TOKEN_DAYS_MAX)
  @ApiPropertyOptional({
    type: 'integer',
    minimum: 1,
    maximum: TOKEN_DAYS_MAX,
    example: 90,
    description:
      'Lifetime in days; it must not outlast the calling token. Omitted: the token expires when the ' +
      'calling token does (never, if that one does not expire).',
  })
  expires_in_days?: number;
}
