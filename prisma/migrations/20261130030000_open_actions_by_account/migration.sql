-- Fair scheduling per node: an enqueued job's priority is its action's place among its account's open
-- (pending or running) actions on the node. This index holds open actions only, so counting them reads
-- the account's open actions, never its history.
CREATE INDEX "actions_open_by_account" ON "actions" ("account_id", "id") WHERE "status" IN ('pending', 'running');
