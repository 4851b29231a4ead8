/** What the audit log endpoint reads and answers: its query, response classes (the OpenAPI document's source), builder. */
import { ApiProperty, ApiPropertyOptional, ApiSchema } from '@nestjs/swagger';
import { IsOptional, Matches } from 'class-validator';
import { apiTime } from '../common/clock';
import { MAX_ID } from '../common/ids';
import { PageOf, PageQuery } from '../common/pagination';
import { QueryInteger } from '../common/query-params';
import { DATE_TIME, ID } from '../openapi/properties';
import { AUDIT_OUTCOMES, AuditOutcome } from './audit.service';

const AUDIT_ACTION = /^[a-z._]{1,64}$/;

export class AuditListQuery extends PageQuery {
  @QueryInteger({
    max: MAX_ID,
    message: 'account_id must be a positive integer',
    description: 'Only this account’s events.',
  })
  account_id?: number;

  @IsOptional()
  @Matches(AUDIT_ACTION, { message: 'action must be an audit action such as snapshot.create' })
  @ApiPropertyOptional({
    type: String,
    pattern: AUDIT_ACTION.source,
    description: 'Only this action, such as `snapshot.create`.',
  })
  action?: string;
}

@ApiSchema({ name: 'AuditTarget', description: 'What an audited request acted on.' })
export class AuditTarget {
  @ApiProperty({ example: 'snapshot' })
  type!: string;

  @ApiProperty({ type: 'integer', nullable: true, example: 802 })
  id!: number | null;
}

@ApiSchema({ name: 'AuditEvent', description: 'Who did what, when, from where.' })
export class AuditEventView {
  @ApiProperty({ ...ID, example: 51 })
  id!: number;

  @ApiProperty(DATE_TIME)
  at!: string;

  @ApiProperty({ type: 'integer', nullable: true, example: 7 })
  account_id!: number | null;

  @ApiProperty({ type: 'integer', nullable: true, example: 3 })
  token_id!: number | null;

  @ApiProperty({ example: 'token:3', description: '`token:<id>` for API calls, `cli` for the operator CLI.' })
  actor!: string;

  @ApiProperty({ example: 'snapshot.create', pattern: AUDIT_ACTION.source })
  action!: string;

  @ApiProperty({ type: AuditTarget, nullable: true })
  target!: AuditTarget | null;

  @ApiProperty({ enum: AUDIT_OUTCOMES, enumName: 'AuditOutcome', example: 'accepted' })
  outcome!: AuditOutcome;

  @ApiProperty({ type: 'integer', nullable: true, example: 201 })
  status_code!: number | null;

  @ApiProperty({ type: String, nullable: true, example: '203.0.113.7' })
  ip!: string | null;

  @ApiProperty({ type: String, nullable: true, example: '5f0c6f1e-3b7e-4c55-9a55-2b4f1f1b8a20' })
  request_id!: string | null;

  @ApiProperty({ type: 'object', nullable: true, additionalProperties: true, example: { server_id: 12345 } })
  detail!: Record<string, unknown> | null;
}

export const AuditEventPage = PageOf(AuditEventView, {
  description: 'A page of audit events, newest first.',
});

export function auditEventView(e: {
  id: number;
  at: Date;
  accountId: number | null;
  tokenId: number | null;
  actor: string;
  action: string;
  targetType: string | null;
  targetId: number | null;
  outcome: string;
  statusCode: number | null;
  ip: string | null;
  requestId: string | null;
  detail: unknown;
}): AuditEventView {
  return {
    id: e.id,
    at: apiTime(e.at),
    account_id: e.accountId,
    token_id: e.tokenId,
    actor: e.actor,
    action: e.action,
    target: e.targetType ? { type: e.targetType, id: e.targetId } : null,
    // The column holds only what AuditService writes (AuditOutcome).
    outcome: e.outcome as AuditOutcome,
    status_code: e.statusCode,
    ip: e.ip,
    request_id: e.requestId,
    detail: e.detail as Record<string, unknown> | null,
  };
}
