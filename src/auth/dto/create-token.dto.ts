import { ArrayUnique, IsArray, IsIn, IsInt, IsOptional, IsString, Length, Max, Min } from 'class-validator';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { SCOPES, Scope } from '../principal';

export class CreateTokenDto {
  @IsString()
  @Length(1, 100)
  @ApiProperty({
    minLength: 1,
    maxLength: 100,
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
    default: ['read', 'write'],
    description: 'What it may do; `admin` only from an admin token.',
  })
  scopes?: Scope[];

  /** Lifetime in days; omitted = no expiry. */
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(3650)
  @ApiPropertyOptional({
    type: 'integer',
    minimum: 1,
    maximum: 3650,
    example: 90,
    description: 'Lifetime in days; omitted = no expiry.',
  })
  expires_in_days?: number;
}
