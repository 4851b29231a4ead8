import { Module } from '@nestjs/common';
import { Readiness } from './readiness';
import { StorePings } from './store-pings';

/** Readiness of the stores, shared by the API's `/readyz` and the worker's. */
@Module({ providers: [StorePings, Readiness], exports: [Readiness] })
export class ReadinessModule {}
