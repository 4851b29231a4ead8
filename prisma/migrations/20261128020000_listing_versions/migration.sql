-- Listing versions: what the hot read path (src/read-path) validates its cached answers against.
--
-- Every change to what a snapshot list or detail shows (a snapshot row inserted, updated or deleted; a
-- server renamed or moved) inserts a row (account_id, weight 1) here, from triggers, so changes made by
-- the API, the worker, the CLI or plain SQL all count. An account's version is the SUM of its weights:
-- it grows with every committed change, whatever order concurrent transactions commit in, and inserts
-- never wait on each other (no counter row to lock). The API compacts the rows of an account into one
-- row carrying their sum, in one statement, which leaves every sum unchanged.
-- TRUNCATE of these tables advances the sequence listing_epoch instead (TRUNCATE fires no row triggers);
-- the epoch is part of every version. Do not edit listing_changes by hand.
CREATE TABLE "listing_changes" (
    "id" BIGSERIAL NOT NULL,
    "account_id" INTEGER NOT NULL,
    "weight" BIGINT NOT NULL DEFAULT 1,

    CONSTRAINT "listing_changes_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "listing_changes_account_id_idx" ON "listing_changes" ("account_id") INCLUDE ("weight");

CREATE SEQUENCE "listing_epoch";
-- Called once, so that from now on every nextval changes last_value (which versions read).
SELECT nextval('listing_epoch');

CREATE FUNCTION "listing_changed_by_snapshot"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO listing_changes (account_id) VALUES (NEW.account_id);
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO listing_changes (account_id) VALUES (OLD.account_id);
  ELSE
    INSERT INTO listing_changes (account_id) VALUES (NEW.account_id);
    IF OLD.account_id <> NEW.account_id THEN
      INSERT INTO listing_changes (account_id) VALUES (OLD.account_id);
    END IF;
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION "listing_changed_by_server"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO listing_changes (account_id) VALUES (NEW.account_id);
  IF OLD.account_id <> NEW.account_id THEN
    INSERT INTO listing_changes (account_id) VALUES (OLD.account_id);
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION "listing_epoch_advance"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM nextval('listing_epoch');
  RETURN NULL;
END $$;

CREATE TRIGGER "snapshots_listing_insert_delete" AFTER INSERT OR DELETE ON "snapshots"
  FOR EACH ROW EXECUTE FUNCTION listing_changed_by_snapshot();
CREATE TRIGGER "snapshots_listing_update" AFTER UPDATE ON "snapshots"
  FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW) EXECUTE FUNCTION listing_changed_by_snapshot();
CREATE TRIGGER "servers_listing_update" AFTER UPDATE OF "name", "account_id" ON "servers"
  FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name OR OLD.account_id IS DISTINCT FROM NEW.account_id)
  EXECUTE FUNCTION listing_changed_by_server();
CREATE TRIGGER "snapshots_listing_truncate" AFTER TRUNCATE ON "snapshots"
  FOR EACH STATEMENT EXECUTE FUNCTION listing_epoch_advance();
CREATE TRIGGER "servers_listing_truncate" AFTER TRUNCATE ON "servers"
  FOR EACH STATEMENT EXECUTE FUNCTION listing_epoch_advance();
CREATE TRIGGER "listing_changes_truncate" AFTER TRUNCATE ON "listing_changes"
  FOR EACH STATEMENT EXECUTE FUNCTION listing_epoch_advance();
