-- Operator input confined: a node's disks live under its image roots, a server's domain is addressed by
-- its libvirt UUID, and no two servers of a node share a disk or a domain.

-- Image roots. A node registered before this migration gets the directories its servers' disks are in
-- (so nothing that works today stops working), or libvirt's default pool when it has none; operators
-- can narrow them afterwards. At least one root, always.
ALTER TABLE "nodes" ADD COLUMN "image_roots" VARCHAR(1024)[];
UPDATE "nodes" n SET "image_roots" = COALESCE(
    (SELECT array_agg(DISTINCT CASE WHEN d.dir = '' THEN '/' ELSE d.dir END ORDER BY CASE WHEN d.dir = '' THEN '/' ELSE d.dir END)
     FROM (SELECT regexp_replace(s."disk_path", '/[^/]*$', '') AS dir FROM "servers" s WHERE s."node_id" = n."id") d),
    ARRAY['/var/lib/libvirt/images']::VARCHAR(1024)[]);
ALTER TABLE "nodes" ALTER COLUMN "image_roots" SET NOT NULL;
ALTER TABLE "nodes" ADD CONSTRAINT "nodes_image_roots_not_empty" CHECK (cardinality("image_roots") >= 1);

-- The domain's UUID: null until known (registered through the API without one, or before this
-- migration); the worker pins it before the server's next operation.
ALTER TABLE "servers" ADD COLUMN "domain_uuid" UUID;
CREATE UNIQUE INDEX "servers_node_id_domain_uuid_key" ON "servers"("node_id", "domain_uuid");

-- One server per disk on a node. Two servers sharing one would snapshot and restore each other's
-- disk: such rows must be sorted out by hand, so the migration stops and names them.
DO $$
DECLARE
    dup RECORD;
BEGIN
    SELECT s."node_id", s."disk_path", string_agg(s."id"::TEXT, ', ' ORDER BY s."id") AS ids INTO dup
    FROM "servers" s GROUP BY s."node_id", s."disk_path" HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'servers % of node % share the disk %: give each its own disk (or remove one) before migrating',
            dup.ids, dup.node_id, dup.disk_path;
    END IF;
END
$$;
CREATE UNIQUE INDEX "servers_node_id_disk_path_key" ON "servers"("node_id", "disk_path");
