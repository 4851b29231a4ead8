-- Retention removes the oldest events first: found by their time, not by a scan of the whole table.
CREATE INDEX "events_created_at_idx" ON "events"("created_at");
