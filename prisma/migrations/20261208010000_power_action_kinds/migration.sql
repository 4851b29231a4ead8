-- Power actions: start (virsh start), stop (forced power-off), shutdown (graceful, within the grace
-- period) and reboot (graceful shutdown, then start). Like creates and restores they hold their server
-- (server_holding_action and actions_one_open_per_server exclude only the background kinds).
ALTER TYPE "action_kind" ADD VALUE IF NOT EXISTS 'start_server';
ALTER TYPE "action_kind" ADD VALUE IF NOT EXISTS 'stop_server';
ALTER TYPE "action_kind" ADD VALUE IF NOT EXISTS 'shutdown_server';
ALTER TYPE "action_kind" ADD VALUE IF NOT EXISTS 'reboot_server';
