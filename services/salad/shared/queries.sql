-- Shared's SQL: orders placed, read, handed to Master (intake), accepted, finished by Master's reports, and
-- pruned. Loaded by salad.core.queries: each statement is named by its `-- name:` line and called by that
-- name from Python (shared/orders.py, shared/dashboard.py). Shared reads and writes its `orders` table only,
-- and reads `order_totals`, which a trigger on `orders` keeps.
--
-- Parameters are `:name`; statuses are written into the SQL. A statement that stands alone commits by
-- itself (autocommit): no BEGIN and COMMIT round trips around it.


-- Placing orders ----------------------------------------------------------------------------------------

-- name: insert_order
-- A new order, inserted and returned, which also wakes a Master's intake: pg_notify is sent at the
-- statement's commit (the channel is salad.core.db.ORDERS_CHANNEL), with the order's id, by which the
-- replicas take turns (salad.master.wakeup.IntakeTurns). A reused :idempotency_key violates its unique
-- index: the caller then reads the order stored under it (order_by_idempotency_key).
INSERT INTO orders (fruits, priority, status, idempotency_key, request_hash, created_at, master_version)
VALUES (CAST(:fruits AS json), :priority, 'pending', :idempotency_key, :request_hash, :created_at, 0)
RETURNING orders.*, pg_notify('salad_orders', CAST(orders.id AS text));

-- name: order_by_idempotency_key
-- The order placed with an Idempotency-Key, to answer a retried request with it.
SELECT orders.* FROM orders WHERE orders.idempotency_key = :idempotency_key;


-- Reading orders ----------------------------------------------------------------------------------------

-- name: order
-- One order, by id.
SELECT orders.* FROM orders WHERE orders.id = :order_id;

-- name: orders_page
-- A page of orders, newest first, starting after the id :before (keyset pagination: ids are below 2^31, so
-- the first page passes 2^31).
SELECT orders.* FROM orders
WHERE orders.id < :before
ORDER BY orders.id DESC
LIMIT :limit;

-- name: orders_page_in_status
-- The same, of the orders in :status only (ix_orders_status_id holds them in id order).
SELECT orders.* FROM orders
WHERE orders.status = :status AND orders.id < :before
ORDER BY orders.id DESC
LIMIT :limit;

-- name: orders_page_with_fruit
-- A page of the orders holding the fruit :fruit, in :status when it is not null, newest first (keyset
-- pagination as above). A search: it reads orders newest first until :limit of them hold the fruit.
SELECT orders.* FROM orders
WHERE orders.id < :before AND (CAST(:status AS text) IS NULL OR orders.status = CAST(:status AS text))
  AND CAST(orders.fruits AS jsonb) @> jsonb_build_array(CAST(:fruit AS text))
ORDER BY orders.id DESC
LIMIT :limit;

-- name: pending_fruits
-- The fruits of the orders no Master has taken yet, oldest order first (the seed's GET /get_tasks_to_do/).
SELECT orders.fruits FROM orders WHERE orders.status = 'pending' ORDER BY orders.id;

-- name: open_orders_by_status
-- How many open orders each status holds (the salad_orders gauge, read at every scrape): an index-only
-- scan of ix_orders_status_id over the open orders' entries alone, so a scrape costs what the work in
-- flight costs, whatever the number of finished orders.
SELECT orders.status, count(*) AS orders FROM orders
WHERE orders.status IN ('pending', 'in_progress')
GROUP BY orders.status;


-- The dashboard (GET /v1/dashboard, /v1/events): read together in one REPEATABLE READ snapshot --------

-- name: open_orders
-- The oldest :limit orders not finished yet (pending or in progress), oldest first.
SELECT orders.* FROM orders
WHERE orders.status IN ('pending', 'in_progress')
ORDER BY orders.id
LIMIT :limit;

-- name: open_orders_count
-- How many orders are not finished yet, all of them.
SELECT count(*) FROM orders WHERE orders.status IN ('pending', 'in_progress');

-- name: order_totals
-- Orders completed and orders failed, all time: one row, kept by a trigger as orders change status, so the
-- dashboard, read twice a second while a page is open, counts no finished order.
SELECT order_totals.completed, order_totals.failed FROM order_totals WHERE order_totals.id = 1;

-- name: newest_finished
-- The :limit newest finished orders by id: the caller picks the most recently finished among them, rather
-- than sorting every finished order by its completion time. One status at a time, each read backwards from
-- the end of ix_orders_status_id: with `status IN (...)`, a planner without statistics on the table yet
-- fetched every finished order and sorted them.
(SELECT orders.* FROM orders WHERE orders.status = 'completed' ORDER BY orders.id DESC LIMIT :limit)
UNION ALL
(SELECT orders.* FROM orders WHERE orders.status = 'failed' ORDER BY orders.id DESC LIMIT :limit)
ORDER BY id DESC
LIMIT :limit;


-- name: finished_by_minute
-- Salads finished since :since, per minute, with the completion time's median and 95th percentile (the
-- page's charts). Read through ix_orders_completed_at: it costs the salads of the window, not all of them.
SELECT date_trunc('minute', orders.completed_at) AS minute,
       count(*) FILTER (WHERE orders.status = 'completed') AS completed,
       count(*) FILTER (WHERE orders.status = 'failed') AS failed,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY orders.preparation_time)
           FILTER (WHERE orders.status = 'completed') AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY orders.preparation_time)
           FILTER (WHERE orders.status = 'completed') AS p95
FROM orders
WHERE orders.completed_at >= :since
GROUP BY 1
ORDER BY 1;


-- Master's intake ---------------------------------------------------------------------------------------

-- name: intake_claim
-- Lease the next pending orders, highest priority first, to the calling Master until :until; one whose
-- intake lease ran out before :now (its Master did not confirm it) is handed out again.
UPDATE orders
SET intake_lease_until = :until
WHERE orders.id IN (
    -- SKIP LOCKED: two Masters asking at once get different orders.
    SELECT orders.id FROM orders
    WHERE orders.status = 'pending' AND (orders.intake_lease_until IS NULL OR orders.intake_lease_until < :now)
    ORDER BY orders.priority DESC, orders.id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
RETURNING orders.id, orders.fruits, orders.priority, orders.created_at;

-- name: accept
-- Master split these orders (:ids) into tasks: each known one is in progress, answered with its status.
-- Idempotent: an order already accepted (a confirmation sent again) keeps what it has, and one Master
-- already reported finished keeps its status and gets an accepted_at no later than its completion.
UPDATE orders
SET status = CASE WHEN orders.status = 'pending' THEN 'in_progress' ELSE orders.status END,
    accepted_at = CASE WHEN orders.accepted_at IS NULL AND orders.completed_at < :now THEN orders.completed_at
                       WHEN orders.accepted_at IS NULL THEN CAST(:now AS timestamptz)
                       ELSE orders.accepted_at END,
    intake_lease_until = NULL
WHERE orders.id = ANY(CAST(:ids AS integer[]))
RETURNING orders.id, orders.status;


-- Master's reports --------------------------------------------------------------------------------------

-- name: apply_reports
-- Master's reports, in one statement that commits by itself: each order's newest change of state (completed,
-- failed, in progress again) applied only if newer (version) than the last one applied, as reports may arrive
-- twice or out of order; and its fruit counts, kept only if counted later (counted_at) than those it holds, as
-- two Masters' reports may cross. Applying an order's newest report leaves it as applying each in version
-- order would: every report sets all the columns it carries. A report confirms an order Master has not
-- confirmed yet (see accept): a quick one's completion often comes first, and it gets an accepted_at no later
-- than its completion.
-- :reports is a JSON list of {order_id, version, status, finished_at, preparation_time, failure_reason};
-- :progress a JSON list of {order_id, counts, counted_at}. Returns each known order of either: its version
-- before the statement (the caller counts the reports newer than it) and its status after.
WITH reported AS (
    SELECT DISTINCT ON (r.order_id) r.*
    FROM json_to_recordset(CAST(:reports AS json))
         AS r(order_id bigint, version integer, status text, finished_at timestamptz, preparation_time float,
              failure_reason text)
    ORDER BY r.order_id, r.version DESC
),
counted AS (
    SELECT DISTINCT ON (p.order_id) p.*
    FROM json_to_recordset(CAST(:progress AS json)) AS p(order_id bigint, counts json, counted_at timestamptz)
    ORDER BY p.order_id, p.counted_at DESC
),
locked AS (
    -- The orders locked in id order, so that crossing reports cannot deadlock.
    SELECT orders.id, orders.status, orders.master_version FROM orders
    WHERE orders.id IN (SELECT reported.order_id FROM reported UNION SELECT counted.order_id FROM counted)
    ORDER BY orders.id
    FOR UPDATE
),
changes AS (
    SELECT locked.id, reported.version > locked.master_version AS newer_state, reported.*,
           counted.counts, counted.counted_at
    FROM locked
    LEFT JOIN reported ON reported.order_id = locked.id
    LEFT JOIN counted ON counted.order_id = locked.id
),
applied AS (
    UPDATE orders
    SET status = CASE WHEN changes.newer_state THEN changes.status ELSE orders.status END,
        completed_at = CASE WHEN changes.newer_state THEN changes.finished_at ELSE orders.completed_at END,
        master_version = CASE WHEN changes.newer_state THEN changes.version ELSE orders.master_version END,
        preparation_time = CASE WHEN changes.newer_state THEN changes.preparation_time
                                ELSE orders.preparation_time END,
        failure_reason = CASE WHEN changes.newer_state THEN changes.failure_reason ELSE orders.failure_reason END,
        intake_lease_until = CASE WHEN changes.newer_state THEN NULL ELSE orders.intake_lease_until END,
        accepted_at = CASE WHEN changes.newer_state
                           THEN coalesce(orders.accepted_at, changes.finished_at, statement_timestamp())
                           ELSE orders.accepted_at END,
        counts = CASE WHEN changes.counted_at > coalesce(orders.counts_at, '-infinity') THEN changes.counts
                      ELSE orders.counts END,
        counts_at = greatest(orders.counts_at, changes.counted_at)
    FROM changes
    WHERE orders.id = changes.id
      AND (changes.newer_state OR changes.counted_at > coalesce(orders.counts_at, '-infinity'))
    RETURNING orders.id, orders.status
)
SELECT locked.id, locked.master_version AS version_before, coalesce(applied.status, locked.status) AS status,
       locked.id IN (SELECT reported.order_id FROM reported) AS reported
FROM locked LEFT JOIN applied ON applied.id = locked.id;

-- name: prune_orders
-- Delete up to :batch orders finished before :older_than, oldest first; SKIP LOCKED leaves those another
-- replica is deleting to it.
DELETE FROM orders
WHERE orders.id IN (
    SELECT orders.id FROM orders
    WHERE orders.status IN ('completed', 'failed') AND orders.completed_at < :older_than
    ORDER BY orders.completed_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
);
