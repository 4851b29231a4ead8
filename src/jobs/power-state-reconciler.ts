import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import {
  ObservedPowerState,
  HYPERVISOR_DRIVER,
  HypervisorDriver,
  ServerRef,
} from '../hypervisor/hypervisor-driver';
import { StatementPool } from '../prisma/statement-pool';
import { WORKER_NODE, WorkerNode } from './worker-node';

interface ServerRow {
  id: number;
  domain: string;
  domain_uuid: string;
  disk_path: string;
  status: string;
}

/**
 * The node's servers whose status reconciliation may change: those whose domain is known by UUID, not
 * `restoring`, and not held by an open create or restore (that operation owns the status until it ends).
 */
const RECONCILABLE = `
  SELECT s.id, s.domain, s.domain_uuid::text AS domain_uuid, s.disk_path, s.status::text AS status
  FROM servers s
  WHERE s.node_id = $1::int AND s.domain_uuid IS NOT NULL AND s.status <> 'restoring'
    AND NOT EXISTS (SELECT 1 FROM server_holding_action(s.id))
  ORDER BY s.id`;

/**
 * Writes what was observed, each row only if it still differs and is still not held: an operation
 * accepted since the look owns the status (its lock on the server row makes this statement see the
 * row it wrote — `restoring` — and skip it).
 */
const WRITE_OBSERVED = `
  UPDATE servers s SET status = k.status::server_status
  FROM unnest($1::int[], $2::text[]) AS k(id, status)
  WHERE s.id = k.id AND s.status::text <> k.status AND s.status <> 'restoring'
    AND NOT EXISTS (SELECT 1 FROM server_holding_action(s.id))
  RETURNING s.id, k.status`;

/**
 * Keeps each server's `status` true to its domain: every POWER_STATE_INTERVAL_MS, and at once after
 * every operation this worker runs, it asks the hypervisor about all of its node's servers in one look
 * and writes the states that changed — a guest stopped, started, paused or crashed outside the API, a
 * domain that no longer exists (`missing`). One worker per node does it; two would write the same facts.
 */
@Injectable()
export class PowerStateReconciler implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(PowerStateReconciler.name);
  private readonly pool: StatementPool;
  private timer?: NodeJS.Timeout;
  /** The pass running now, if any; a nudge during it asks for one more pass after it. */
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  /** 0: reconciliation off. */
  private readonly intervalMs: number;

  constructor(
    config: AppConfig,
    @Inject(WORKER_NODE) private readonly node: WorkerNode,
    @Inject(HYPERVISOR_DRIVER) private readonly driver: HypervisorDriver,
  ) {
    this.intervalMs = config.powerStateIntervalMs;
    this.pool = new StatementPool(config.databaseUrl, 1);
  }

  onApplicationBootstrap(): void {
    if (this.intervalMs === 0) return;
    this.nudge();
    this.timer = setInterval(() => this.nudge(), this.intervalMs);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
    await this.pool.close();
  }

  /** Reconciles soon: passes never overlap, and nudges during a pass coalesce into one more. */
  nudge(): void {
    if (this.stopped || this.intervalMs === 0) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.reconcile()
      .then(() => undefined)
      .catch((err: unknown) =>
        this.logger.warn({ err, node: this.node.name }, 'power state reconciliation failed'),
      )
      .finally(() => {
        this.running = null;
        if (this.again) {
          this.again = false;
          this.nudge();
        }
      });
  }

  /** One pass: the states it changed, by server id. */
  async reconcile(): Promise<Map<number, ObservedPowerState>> {
    const { rows } = await this.pool.query<ServerRow>({
      name: 'power-reconcilable',
      text: RECONCILABLE,
      values: [this.node.id],
    });
    const changed = new Map<number, ObservedPowerState>();
    if (rows.length === 0) return changed;
    const refs: ServerRef[] = rows.map((r) => ({
      id: r.id,
      domain: r.domain,
      domainUuid: r.domain_uuid,
      diskPath: r.disk_path,
    }));
    const observed = await this.driver.observePowerStates(refs);
    const differ = rows.flatMap((r, i) =>
      r.status === observed[i] ? [] : [{ id: r.id, status: observed[i] }],
    );
    if (differ.length === 0) return changed;
    const written = await this.pool.query<{ id: number; status: ObservedPowerState }>({
      name: 'power-write-observed',
      text: WRITE_OBSERVED,
      values: [differ.map((d) => d.id), differ.map((d) => d.status)],
    });
    for (const w of written.rows) changed.set(w.id, w.status);
    if (changed.size > 0) {
      this.logger.log(
        { node: this.node.name, changed: Object.fromEntries(changed) },
        'power states reconciled',
      );
    }
    return changed;
  }
}
