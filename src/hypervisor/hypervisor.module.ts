import { Module } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { PrismaService } from '../prisma/prisma.service';
import { WORKER_NODE, WorkerNode } from '../jobs/worker-node';
import { createHypervisorDriver } from './driver-factory';
import { FakeHypervisorDriver } from './fake/fake-hypervisor-driver';
import { HYPERVISOR_DRIVER } from './hypervisor-driver';
import { LibvirtHypervisorDriver } from './libvirt/libvirt-hypervisor-driver';

/** The worker's node (from `WORKER_NODE`) and the driver its record names. */
@Module({
  providers: [
    {
      provide: WORKER_NODE,
      inject: [PrismaService, AppConfig],
      useFactory: async (prisma: PrismaService, config: AppConfig): Promise<WorkerNode> => {
        const name = config.workerNode;
        if (!name) throw new Error('WORKER_NODE is required for the worker role');
        const node = await prisma.node.findUnique({ where: { name } });
        if (!node)
          throw new Error(`WORKER_NODE "${name}" is not a registered node (see: npm run cli -- node create)`);
        return {
          id: node.id,
          name: node.name,
          driver: node.driver,
          uri: node.uri,
          snapshotDir: node.snapshotDir,
          imageRoots: node.imageRoots,
        };
      },
    },
    {
      provide: HYPERVISOR_DRIVER,
      inject: [WORKER_NODE, AppConfig],
      useFactory: (node: WorkerNode, config: AppConfig) =>
        createHypervisorDriver(node.driver, {
          fake: () => FakeHypervisorDriver.fromEnv(process.env),
          libvirt: () =>
            new LibvirtHypervisorDriver({
              uri: node.uri,
              imageRoots: node.imageRoots,
              maxConcurrentCopies: config.libvirtMaxConcurrentCopies,
              compression: config.snapshotCompression,
              stopGraceSeconds: config.stopGraceSeconds,
            }),
        }),
    },
  ],
  exports: [WORKER_NODE, HYPERVISOR_DRIVER],
})
export class HypervisorModule {}
