import type { ActionKind } from '../../generated/prisma/enums';

/**
 * The power actions a customer asks for (`POST /api/v1/servers/{id}/actions/ {"type": ...}`), the action
 * kind each is recorded as, and the status its server has once it succeeded. The API, the worker and
 * the CLI derive everything they say about power actions from here.
 *
 * - `start`: power the server on (`virsh start`).
 * - `stop`: power it off at once (`virsh destroy`), as pulling the plug would.
 * - `shutdown`: ask the guest to shut down (ACPI or guest agent) and wait STOP_GRACE_SECONDS; the action
 *   fails `shutdown_timeout` when it is still running then.
 * - `reboot`: a graceful shutdown (as `shutdown`, when running) then a start: a new boot the worker can
 *   see happen, unlike `virsh reboot`, whose request a guest may ignore while the domain stays running.
 *
 * Each is idempotent: starting a running server, or stopping one that is stopped, succeeds and does
 * nothing (the status may have been out of date when it was asked for).
 */
export const POWER_ACTIONS = {
  start: { kind: 'start_server', becomes: 'running' },
  stop: { kind: 'stop_server', becomes: 'stopped' },
  shutdown: { kind: 'shutdown_server', becomes: 'stopped' },
  reboot: { kind: 'reboot_server', becomes: 'running' },
} as const satisfies Record<string, { kind: ActionKind; becomes: 'running' | 'stopped' }>;

export type PowerActionType = keyof typeof POWER_ACTIONS;
export type PowerActionKind = (typeof POWER_ACTIONS)[PowerActionType]['kind'];

export const POWER_ACTION_TYPES = Object.keys(POWER_ACTIONS) as PowerActionType[];

const BY_KIND = new Map<ActionKind, (typeof POWER_ACTIONS)[PowerActionType]>(
  Object.values(POWER_ACTIONS).map((p) => [p.kind, p]),
);

export function isPowerKind(kind: ActionKind): kind is PowerActionKind {
  return BY_KIND.has(kind);
}

/** The status a server has once a power action of `kind` succeeded. */
export function statusAfter(kind: PowerActionKind): 'running' | 'stopped' {
  return BY_KIND.get(kind)!.becomes;
}
