import { Module } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { RouteTableModule } from '../common/route-table';
import { HotReadPath } from './hot-read-path';
import { ListingCompactor } from './listing-compactor';

/** The hot read path in front of the API's polled GET endpoints (installed by createHttpApp), and the
 * compaction of the listing versions it validates cached answers against. */
@Module({
  imports: [AuthModule, RouteTableModule],
  providers: [HotReadPath, ListingCompactor],
  exports: [HotReadPath],
})
export class HotReadModule {}
