-- A server's status is what its domain is (workers reconcile it with the hypervisor), not only what
-- this service last wrote: a domain paused, crashed or gone outside the API says so.
ALTER TYPE "server_status" ADD VALUE IF NOT EXISTS 'paused';
ALTER TYPE "server_status" ADD VALUE IF NOT EXISTS 'crashed';
ALTER TYPE "server_status" ADD VALUE IF NOT EXISTS 'missing';
