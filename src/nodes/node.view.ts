/** What the node endpoints answer: the response class (the OpenAPI document's source) and its builder. */
import { ApiProperty, ApiSchema } from '@nestjs/swagger';
import { apiTime } from '../common/clock';
import { PageOf } from '../common/pagination';
import { NodeDriver } from '../generated/prisma/enums';
import { DATE_TIME, ID } from '../openapi/properties';

@ApiSchema({ name: 'Node', description: 'A hypervisor host; its worker consumes the queue named after it.' })
export class NodeView {
  @ApiProperty({ ...ID, example: 1 })
  id!: number;

  @ApiProperty({ example: 'hv1' })
  name!: string;

  @ApiProperty({ enum: NodeDriver, enumName: 'NodeDriver', example: 'libvirt' })
  driver!: NodeDriver;

  @ApiProperty({ type: String, nullable: true, example: 'qemu:///system' })
  uri!: string | null;

  @ApiProperty({ example: '/var/lib/vps/snapshots' })
  snapshot_dir!: string;

  @ApiProperty({
    type: [String],
    example: ['/var/lib/libvirt/images'],
    description: "Directories the node's disks may live in.",
  })
  image_roots!: string[];

  @ApiProperty({ example: 'default', description: 'The configured backup store its backups go to.' })
  backup_store!: string;

  @ApiProperty(DATE_TIME)
  created_at!: string;
}

export const NodePage = PageOf(NodeView, { description: 'Every node (one page holds them all).' });

export function nodeView(n: {
  id: number;
  name: string;
  driver: NodeDriver;
  uri: string | null;
  snapshotDir: string;
  imageRoots: string[];
  backupStore: string;
  createdAt: Date;
}): NodeView {
  return {
    id: n.id,
    name: n.name,
    driver: n.driver,
    uri: n.uri,
    snapshot_dir: n.snapshotDir,
    image_roots: n.imageRoots,
    backup_store: n.backupStore,
    created_at: apiTime(n.createdAt),
  };
}
