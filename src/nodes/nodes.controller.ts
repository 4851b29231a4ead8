import { Body, Controller, Get, Post } from '@nestjs/common';
import { RequireScope } from '../auth/decorators';
import { apiTime } from '../common/clock';
import { ApiDoc, ApiDocs } from '../openapi/endpoints';
import { CreateNodeDto } from './dto/create-node.dto';
import { NodesService } from './nodes.service';

type NodeRow = Awaited<ReturnType<NodesService['list']>>[number];

const nodeView = (n: NodeRow) => ({
  id: n.id,
  name: n.name,
  driver: n.driver,
  uri: n.uri,
  snapshot_dir: n.snapshotDir,
  created_at: apiTime(n.createdAt),
});

/** Operators register hypervisor hosts (admin tokens only). */
@ApiDocs.admin()
@Controller('api/v1/admin/nodes')
@RequireScope('admin')
export class NodesController {
  constructor(private readonly nodes: NodesService) {}

  @Get()
  @ApiDoc.nodes.list()
  async list() {
    const rows = await this.nodes.list();
    return { count: rows.length, next: null, previous: null, results: rows.map(nodeView) };
  }

  @Post()
  @ApiDoc.nodes.create()
  async create(@Body() dto: CreateNodeDto) {
    return nodeView(
      await this.nodes.create({
        name: dto.name,
        driver: dto.driver,
        uri: dto.uri,
        snapshotDir: dto.snapshot_dir,
      }),
    );
  }
}
