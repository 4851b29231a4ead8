-- Webhook endpoints of an account, their deliveries (one per event and endpoint), and each event's
-- rendered body (see model EventPayload): the outbox's consumers.
CREATE TABLE "webhooks" (
    "id" SERIAL NOT NULL,
    "account_id" INTEGER NOT NULL,
    "url" VARCHAR(2048) NOT NULL,
    "event_types" VARCHAR(64)[] NOT NULL,
    "secret_sealed" BYTEA NOT NULL,
    "secret_prefix" VARCHAR(16) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "failing_since" TIMESTAMPTZ(3),
    "last_error" VARCHAR(500),
    "disabled_at" TIMESTAMPTZ(3),
    "disabled_reason" VARCHAR(500),

    CONSTRAINT "webhooks_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "webhooks_account_id_idx" ON "webhooks"("account_id");

ALTER TABLE "webhooks" ADD CONSTRAINT "webhooks_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "accounts"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

CREATE TYPE "webhook_delivery_status" AS ENUM ('pending', 'delivered', 'abandoned');

CREATE TABLE "webhook_deliveries" (
    "id" BIGSERIAL NOT NULL,
    "event_id" BIGINT NOT NULL,
    "webhook_id" INTEGER NOT NULL,
    "status" "webhook_delivery_status" NOT NULL DEFAULT 'pending',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "next_attempt_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_status" INTEGER,
    "last_error" VARCHAR(500),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "delivered_at" TIMESTAMPTZ(3),

    CONSTRAINT "webhook_deliveries_pkey" PRIMARY KEY ("id")
);

CREATE UNIQUE INDEX "webhook_deliveries_event_id_webhook_id_key" ON "webhook_deliveries"("event_id", "webhook_id");
CREATE INDEX "webhook_deliveries_webhook_id_idx" ON "webhook_deliveries"("webhook_id");
-- What the sender claims: only the pending rows, by when they are due.
CREATE INDEX "webhook_deliveries_due_idx" ON "webhook_deliveries"("next_attempt_at") WHERE "status" = 'pending';

ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_event_id_fkey" FOREIGN KEY ("event_id") REFERENCES "events"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_webhook_id_fkey" FOREIGN KEY ("webhook_id") REFERENCES "webhooks"("id") ON DELETE CASCADE ON UPDATE CASCADE;

CREATE TABLE "event_payloads" (
    "event_id" BIGINT NOT NULL,
    "body" TEXT NOT NULL,

    CONSTRAINT "event_payloads_pkey" PRIMARY KEY ("event_id")
);

ALTER TABLE "event_payloads" ADD CONSTRAINT "event_payloads_event_id_fkey" FOREIGN KEY ("event_id") REFERENCES "events"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- An event is owed to every enabled endpoint of its account that asks for its type (an empty list asks
-- for all), from the same transaction that records it: an endpoint created later does not receive
-- older events; one disabled or deleted receives nothing more.
CREATE FUNCTION "webhook_deliveries_of_event"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO "webhook_deliveries" ("event_id", "webhook_id", "next_attempt_at")
    SELECT NEW."id", w."id", NEW."created_at"
    FROM "webhooks" w
    WHERE w."account_id" = NEW."account_id" AND w."disabled_at" IS NULL
      AND (cardinality(w."event_types") = 0 OR NEW."type" = ANY (w."event_types"));
    RETURN NULL;
END $$;

CREATE TRIGGER "events_webhook_deliveries" AFTER INSERT ON "events"
    FOR EACH ROW EXECUTE FUNCTION "webhook_deliveries_of_event"();
