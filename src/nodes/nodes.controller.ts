import { Body, Controller, Get, Param, Patch, Post, UseInterceptors } from '@nestjs/common';
import { Audit, AuditInterceptor } from '../audit/audit.interceptor';
import { RequireScope } from '../auth/decorators';
import { PathIdPipe } from '../common/ids';
import { wholePage } from '../common/pagination';
import { ApiDoc, ApiDocs } from '../openapi/endpoints';
import { CreateNodeDto, UpdateNodeDto } from './dto/create-node.dto';
import { nodeView } from './node.view';
import { NodesService } from './nodes.service';

/** Operators register hypervisor hosts (admin tokens only). */
@ApiDocs.admin()
@Controller('api/v1/admin/nodes')
@RequireScope('admin')
@UseInterceptors(AuditInterceptor)
export class NodesController {
  constructor(private readonly nodes: NodesService) {}

  @Get()
  @ApiDoc.nodes.list()
  async list() {
    const rows = await this.nodes.list();
    return wholePage(rows.map(nodeView));
  }

  @Post()
  @ApiDoc.nodes.create()
  @Audit('node.create', 'node', {
    bodyFields: ['name', 'driver', 'uri', 'snapshot_dir', 'image_roots', 'backup_store'],
  })
  async create(@Body() dto: CreateNodeDto) {
    return nodeView(
      await this.nodes.create({
        name: dto.name,
        driver: dto.driver,
        uri: dto.uri,
        snapshotDir: dto.snapshot_dir,
        imageRoots: dto.image_roots,
        backupStore: dto.backup_store,
      }),
    );
  }

  /** Where the node's next backups go; those already written stay in their store. */
  @Patch(':id')
  @ApiDoc.nodes.update()
  @Audit('node.update', 'node', { bodyFields: ['backup_store'] })
  async update(@Param('id', new PathIdPipe('node_not_found')) id: number, @Body() dto: UpdateNodeDto) {
    return nodeView((await this.nodes.setBackupStore({ id }, dto.backup_store)).node);
  }
}
