import { Injectable } from '@nestjs/common';

/** The time. Injected so tests can move it. */
@Injectable()
export class Clock {
  now(): Date {
    return new Date();
  }
}

/** API timestamps: UTC, second precision, `Z` (as published: `2025-01-15T18:30:00Z`). */
export function apiTime(d: Date): string;
export function apiTime(d: Date | null): string | null;
export function apiTime(d: Date | null): string | null {
  return d ? d.toISOString().replace(/\.\d{3}Z$/, 'Z') : null;
}
