-- Master's SQL: the task life cycle (split, claim, exchange, results, leases, reaping), the worker registry,
-- the outbox relay and retention. Loaded by salad.core.queries: each statement is named by its
-- `-- name:` line and called by that name from Python (master/tasks.py, registry.py, background.py).
--
-- Parameters are `:name`. Statuses are written into the SQL, not bound: a prepared statement's generic
-- plan can then use the partial indexes (`WHERE status = 'queued'`, `WHERE status = 'running'`), and
-- PostgreSQL stops planning the claim and the exchange afresh at each run.
-- Every statement is one round trip; the ones that stand alone commit by themselves (autocommit).


-- Splitting orders --------------------------------------------------------------------------------------

-- name: split
-- The countdown rows and the tasks of a batch of orders, in one statement that commits by itself: idle
-- workers wait for a split, and as two statements in a transaction (BEGIN, both inserts, NOTIFY, COMMIT)
-- the tasks could be claimed four round trips later.
-- :orders is a JSON list of {order_id, total, ordered_at}; :batch a JSON list of fruit rows, the first ones
-- (in hand-out order) already leased to the claims waiting on this Master (status 'running', lease_id,
-- worker, lease_expires_at set), the others queued.
WITH new_orders AS (
    -- A countdown row per order not split yet. This both finds those orders and claims them: an order
    -- another Master is inserting makes this insert wait for its transaction, then skip the order; an order
    -- split before (a retried intake) is skipped at once.
    INSERT INTO salads (order_id, total, remaining, status, ordered_at, version, seed_collected)
    SELECT r.order_id, r.total, r.total, 'in_progress', r.ordered_at, 0, false
    FROM json_to_recordset(CAST(:orders AS json)) AS r(order_id bigint, total integer, ordered_at timestamptz)
    ON CONFLICT (order_id) DO NOTHING
    RETURNING salads.order_id
)
-- The fruits of those orders only, each one task. A fruit leased to a waiting claim is claimed now.
INSERT INTO tasks (order_id, position, fruit, execution_time, priority, hand_out_rank, status, attempts,
                   max_attempts, created_at, queued_at, lease_id, worker, lease_expires_at, claimed_at)
SELECT r.order_id, r.position, r.fruit, r.execution_time, r.priority, r.hand_out_rank, r.status, r.attempts,
       :max_attempts, CAST(:now AS timestamptz), CAST(:now AS timestamptz), r.lease_id, r.worker,
       r.lease_expires_at, CASE WHEN r.lease_id IS NOT NULL THEN CAST(:now AS timestamptz) END
FROM json_to_recordset(CAST(:batch AS json)) AS r(order_id bigint, position integer, fruit text,
                                                   execution_time integer, priority integer,
                                                   hand_out_rank integer, status text, attempts integer,
                                                   lease_id text, worker text, lease_expires_at timestamptz)
JOIN new_orders ON new_orders.order_id = r.order_id
-- pg_notify per queued task row: PostgreSQL sends identical notifications of a transaction once, at its
-- commit, so the claims waiting on every Master wake as the tasks become visible (a NOTIFY statement after
-- this one would be a round trip later). The channel is salad.core.db.TASKS_CHANNEL. A split that leased
-- all its tasks itself sends none: each listener would spend a transaction receiving it, for no claim.
RETURNING tasks.id, tasks.order_id, tasks.fruit, tasks.execution_time, tasks.attempts, tasks.queued_at,
          tasks.priority, tasks.hand_out_rank, tasks.lease_id, tasks.worker,
          CASE WHEN tasks.status = 'queued' THEN pg_notify('salad_tasks', tasks.status) END;


-- Claims and exchanges ----------------------------------------------------------------------------------

-- name: resume
-- A retried request's tasks: those its earlier attempt leased to :worker_name under the request id (:lease)
-- and that still run under it, their lease renewed until :expires (the worker starts them only now). The
-- worker is matched too: one worker cannot take another's leases by naming its request id. Run for retries
-- only: it reads the running tasks by their partial index (ix_tasks_running_lease) instead of an index on
-- lease_id, which every claim would write.
UPDATE tasks
SET lease_expires_at = :expires
WHERE tasks.lease_id = :lease AND tasks.worker = :worker_name AND tasks.status = 'running'
RETURNING tasks.id, tasks.order_id, tasks.fruit, tasks.execution_time, tasks.attempts, tasks.priority,
          tasks.hand_out_rank;


-- name: exchange
-- The successes of several requests recorded, their orders counted down (an order's last fruit completes it
-- and queues its report to Shared), and each request's next tasks leased: one statement that commits by
-- itself. The requests are the exchanges and claims that reached this Master while the previous statement
-- ran (master/exchanges.py): one commit and one countdown update per order for all of them, where a
-- statement each made the results of an order wait on its countdown row one commit after another.
-- As statements in a transaction (BEGIN, successes, claim, a countdown per order, the completion and its
-- report, COMMIT) it cost Master more CPU than PostgreSQL spent running it: each round trip costs psycopg and
-- SQLAlchemy CPU.
-- :batch is a JSON list of {id, lease_id, result}, the successes in task id order. :takers is a JSON list of
-- {lease, worker_name, expires, first, max_tasks}: the requests' claims, each the leases of the tasks
-- numbered first .. first + max_tasks - 1 (from 0, in hand-out order) of the :max_tasks taken in all.
-- The answer is one result set: `kind` tells a leased task, a recorded success and a completed order apart.
WITH reports AS (
    SELECT * FROM json_to_recordset(CAST(:batch AS json)) AS r(id bigint, lease_id text, result text)
),
picked AS (
    -- The next tasks in hand-out order: priority, then the oldest order first, then the rank planned at the
    -- split within an order. The partial index ix_tasks_queued holds exactly this order, so the scan stops
    -- at the limit; SKIP LOCKED passes over tasks another claim is taking this instant, so two workers or two
    -- Masters never get the same task. Failures were recorded before this statement, so a fruit they queued
    -- again can be leased here; successes free no task for it (their tasks are no longer queued).
    SELECT tasks.id, tasks.priority, tasks.order_id, tasks.hand_out_rank FROM tasks
    WHERE tasks.status = 'queued'
    ORDER BY tasks.priority DESC, tasks.order_id, tasks.hand_out_rank, tasks.id
    LIMIT :max_tasks
    FOR UPDATE SKIP LOCKED
),
numbered AS (
    SELECT picked.id,
           row_number() OVER (ORDER BY picked.priority DESC, picked.order_id, picked.hand_out_rank, picked.id) - 1
               AS n
    FROM picked
),
shares AS (
    -- Each taker's share: the tasks numbered first .. first + max_tasks - 1.
    SELECT numbered.id, takers.lease, takers.worker_name, takers.expires
    FROM numbered
    JOIN json_to_recordset(CAST(:takers AS json))
        AS takers(lease text, worker_name text, expires timestamptz, first integer, max_tasks integer)
        ON numbered.n >= takers.first AND numbered.n < takers.first + takers.max_tasks
),
claimed AS (
    -- Each taker's share, leased under its lease. The tasks are found by primary key (`= ANY` of their ids):
    -- joined to `shares` alone, the generic plan (which cannot know how many :max_tasks is) read the whole
    -- table. RETURNING keeps no order: the caller sorts them back.
    UPDATE tasks
    SET status = 'running', attempts = tasks.attempts + 1, lease_id = shares.lease,
        lease_expires_at = shares.expires, worker = shares.worker_name, claimed_at = :now
    FROM shares
    WHERE tasks.id = ANY(ARRAY(SELECT shares.id FROM shares)) AND tasks.id = shares.id
    RETURNING tasks.id, tasks.order_id, tasks.fruit, tasks.execution_time, tasks.attempts, tasks.queued_at,
              tasks.priority, tasks.hand_out_rank, tasks.lease_id, tasks.worker
),
succeeded AS (
    -- Each success whose lease still holds. One under a stale lease, a retried post or an unknown task
    -- matches nothing here: the caller answers those afterwards (tasks.record_one_by_one).
    -- Found by primary key (`= ANY`), as the claim's tasks are: else the generic plan reads every running task.
    UPDATE tasks
    SET status = 'succeeded', lease_expires_at = NULL, finished_at = :now, result = r.result
    FROM reports AS r
    WHERE tasks.id = ANY(ARRAY(SELECT reports.id FROM reports))
      AND tasks.id = r.id AND tasks.lease_id = r.lease_id AND tasks.status = 'running'
    RETURNING tasks.id, tasks.order_id, tasks.fruit, tasks.claimed_at, tasks.created_at, tasks.lease_id
),
done AS (
    -- The fruits recorded per order.
    SELECT succeeded.order_id, count(*) AS fruits
    FROM succeeded
    GROUP BY succeeded.order_id
),
locked AS (
    -- Those orders' countdown rows, locked in order id order, so concurrent exchanges cannot deadlock on
    -- them. A failed order's late results count too: a requeue resumes it, still counting right.
    -- An order completes when its last fruit is done while it is in progress.
    SELECT salads.order_id, salads.remaining - done.fruits AS remaining, salads.ordered_at,
           salads.remaining - done.fruits <= 0 AND salads.status = 'in_progress' AS completes
    FROM salads JOIN done ON salads.order_id = done.order_id
    ORDER BY salads.order_id
    FOR UPDATE OF salads
),
counted AS (
    -- The countdown; a completing order also gets its status, finish time, preparation time (seconds since
    -- the order was placed at Shared) and a new version, the one its report to Shared carries. Its counts
    -- changed: flagged for the relay's next progress report (an index entry only when the flag was unset),
    -- unless it completes: Shared shows a completed order's fruits all done, whatever counts it holds.
    UPDATE salads
    SET remaining = locked.remaining, progress_due = NOT locked.completes,
        status = CASE WHEN locked.completes THEN 'completed' ELSE salads.status END,
        finished_at = CASE WHEN locked.completes THEN :now ELSE salads.finished_at END,
        preparation_time = CASE WHEN locked.completes
                                THEN greatest(0, CAST(EXTRACT(epoch FROM :now - locked.ordered_at) AS FLOAT))
                                ELSE salads.preparation_time END,
        version = salads.version + CAST(locked.completes AS INTEGER)
    FROM locked
    WHERE salads.order_id = locked.order_id
    RETURNING salads.order_id, salads.version, salads.finished_at, salads.preparation_time, locked.completes
),
reported AS (
    -- The completion's report to Shared, in the outbox: the relay delivers it until Shared acknowledges. It
    -- is due to any replica's relay at :reports_due_at: Master's exchanges hand it to their own relay, which
    -- sends it at once, and make it due a little later, so that no other relay sends it meanwhile.
    INSERT INTO outbox (order_id, version, status, finished_at, preparation_time, attempts, next_attempt_at)
    SELECT counted.order_id, counted.version, 'completed', counted.finished_at, counted.preparation_time, 0,
           CAST(:reports_due_at AS timestamptz)
    FROM counted
    WHERE counted.completes
    RETURNING outbox.id, outbox.order_id, outbox.version, outbox.finished_at, outbox.preparation_time
)
-- The answer: the tasks leased, the successes recorded (for the metrics), the orders completed (their
-- reports: the outbox row's id, and the version, finish and preparation time it reports).
SELECT 'leased' AS kind, claimed.id, claimed.order_id, claimed.fruit, claimed.execution_time, claimed.attempts,
       claimed.priority, claimed.queued_at, NULL AS claimed_at, NULL AS created_at, claimed.hand_out_rank,
       claimed.lease_id, claimed.worker, CAST(NULL AS integer) AS version,
       CAST(NULL AS timestamptz) AS finished_at, CAST(NULL AS float) AS preparation_time
FROM claimed
UNION ALL
SELECT 'succeeded', succeeded.id, succeeded.order_id, succeeded.fruit, NULL, NULL, NULL, NULL,
       succeeded.claimed_at, succeeded.created_at, NULL, succeeded.lease_id, NULL, NULL, NULL, NULL
FROM succeeded
UNION ALL
SELECT 'completed', reported.id, reported.order_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       reported.version, reported.finished_at, reported.preparation_time
FROM reported;


-- Results -----------------------------------------------------------------------------------------------

-- name: lock_reported
-- The reported tasks a success statement did not record (failures, stale leases, retried posts, unknown
-- tasks), locked in id order, as the exchange statement locks its successes' tasks, to be answered one by one.
SELECT tasks.id, tasks.order_id, tasks.fruit, tasks.status, tasks.lease_id, tasks.claimed_at, tasks.created_at
FROM tasks
WHERE tasks.id = ANY(CAST(:ids AS integer[]))
ORDER BY tasks.id
FOR UPDATE;

-- name: failure_on_record
-- Whether :worker's failure of task :task_id with :error is recorded: a retried request sends again the
-- failures its first attempt recorded, whose tasks have moved on since under another lease.
SELECT EXISTS (SELECT FROM task_failures
               WHERE task_failures.task_id = :task_id AND task_failures.worker = :worker
                 AND task_failures.error = :error);

-- name: order_in_progress
-- Lock an order's countdown row if the order is in progress (before failing it).
SELECT salads.order_id FROM salads
WHERE salads.order_id = :order_id AND salads.status = 'in_progress'
FOR UPDATE;

-- name: order_failed
-- Lock an order's countdown row if the order failed (before resuming it).
SELECT salads.order_id FROM salads
WHERE salads.order_id = :order_id AND salads.status = 'failed'
FOR UPDATE;

-- name: cancel_queued
-- A failed order's fruits still queued fail with it, with :error saying why (they were never tried).
-- SKIP LOCKED: a queued fruit locked now is most likely being leased by an exchange statement, which may be
-- waiting for a task this transaction holds (a late worker's success): it runs, as it would once leased, and
-- is not waited for. Should whoever holds it leave it queued (that statement fails, or it was a stale report's
-- task, locked to be answered), it stays queued and runs later: its success counts for the failed order, and
-- a requeue of the order resumes it.
UPDATE tasks
SET status = 'failed', finished_at = :now, error = :error
WHERE tasks.id IN (SELECT queued.id FROM tasks AS queued
                   WHERE queued.order_id = :order_id AND queued.status = 'queued'
                   FOR UPDATE SKIP LOCKED);

-- name: requeue_failed_order
-- Queue every failed task of an order again, with fresh attempts.
UPDATE tasks
SET status = 'queued', attempts = 0, queued_at = :now, worker = NULL, lease_id = NULL, lease_expires_at = NULL,
    finished_at = NULL
WHERE tasks.order_id = :order_id AND tasks.status = 'failed';

-- name: requeue_failed_task
-- Queue one failed task again with fresh attempts, and the fruits its order's failure cancelled (their
-- error is :cancelled).
UPDATE tasks
SET status = 'queued', attempts = 0, queued_at = :now, worker = NULL, lease_id = NULL, lease_expires_at = NULL,
    finished_at = NULL
WHERE tasks.order_id = :order_id AND tasks.status = 'failed' AND (tasks.id = :task_id OR tasks.error = :cancelled);


-- Leases ------------------------------------------------------------------------------------------------

-- name: heartbeat_lease
-- A worker's heartbeat for one task: its lease runs until :expires. Nothing changes (and the caller answers
-- 409 or 404) unless :lease_id is still the task's lease.
UPDATE tasks
SET lease_expires_at = :expires
WHERE tasks.id = :task_id AND tasks.lease_id = :lease_id AND tasks.status = 'running';

-- name: release
-- A worker hands a task back unstarted or unfinished (it is stopping): queued again, the attempt not counted.
UPDATE tasks
SET status = 'queued', attempts = tasks.attempts - 1, queued_at = :now, worker = NULL, lease_id = NULL,
    lease_expires_at = NULL
WHERE tasks.id = :task_id AND tasks.lease_id = :lease_id AND tasks.status = 'running';

-- name: reaper_ran
-- A reaper pass records itself and returns the seconds since the previous pass of any replica (NULL: none
-- before), on the database's clock, which every replica shares. After a silence longer than :amnesty_after
-- (the database or every Master away: workers could not heartbeat either), every running task gets a lease
-- until :expires at least (an amnesty), in this statement: the row stays locked until it commits, so a pass
-- of another replica waits, then finds the leases extended and the silence over.
WITH ran AS (
    INSERT INTO reaper_runs (id, last_run) VALUES (1, clock_timestamp())
    ON CONFLICT (id) DO UPDATE SET previous_run = reaper_runs.last_run, last_run = clock_timestamp()
    RETURNING CAST(extract(epoch FROM last_run - previous_run) AS double precision) AS silence
), extended AS (
    UPDATE tasks
    SET lease_expires_at = :expires
    FROM ran
    WHERE (ran.silence IS NULL OR ran.silence > :amnesty_after)
      AND tasks.status = 'running' AND tasks.lease_expires_at < :expires
    RETURNING tasks.id
)
SELECT ran.silence, (SELECT count(*) FROM extended) AS extended FROM ran;

-- name: expired_leases
-- Up to :limit running tasks whose lease expired before :now (their worker is gone), oldest expiry first,
-- locked for the reaper; SKIP LOCKED leaves those another Master is reaping to it. Every column, read as
-- the ORM's Task objects that the reaper requeues or fails.
SELECT tasks.* FROM tasks
WHERE tasks.status = 'running' AND tasks.lease_expires_at < :now
ORDER BY tasks.lease_expires_at
LIMIT :limit
FOR UPDATE SKIP LOCKED;


-- Worker registry ---------------------------------------------------------------------------------------

-- name: check_in_workers
-- Workers say they are alive, with their capacity (slots, prefetch) and load (busy): inserted the first
-- time, updated after. A replica writes the check-ins it received together, one statement a second
-- (master/registry.py CheckIns), :batch a JSON list of {name, slots, prefetch, busy, last_seen}. Not a
-- task's lease heartbeat: this only feeds /v1/workers, the live-worker gauge and the hand-out plan.
INSERT INTO workers (name, slots, prefetch, busy, started_at, last_seen)
SELECT r.name, r.slots, r.prefetch, r.busy, r.last_seen, r.last_seen
FROM json_to_recordset(CAST(:batch AS json))
     AS r(name text, slots integer, prefetch integer, busy integer, last_seen timestamptz)
ON CONFLICT (name) DO UPDATE
SET slots = excluded.slots, prefetch = excluded.prefetch, busy = excluded.busy, last_seen = excluded.last_seen;

-- name: live_capacities
-- The live workers' slots and prefetch, in name order: what an order's hand-out is planned for.
SELECT workers.slots, workers.prefetch FROM workers WHERE workers.last_seen >= :since ORDER BY workers.name;

-- name: forget_worker
-- A worker leaving cleanly.
DELETE FROM workers WHERE workers.name = :name;

-- name: workers
-- The workers seen, by name, each marked live when seen since :since; with :live_only, the live ones only.
SELECT workers.name, workers.slots, workers.prefetch, workers.busy, workers.started_at, workers.last_seen,
       workers.last_seen >= :since AS live
FROM workers
WHERE NOT :live_only OR workers.last_seen >= :since
ORDER BY workers.name;

-- name: queue_stats
-- Queue depth and the oldest queued task, running tasks, live workers (seen since :since) and their slots:
-- index scans, cheap enough for every scrape and autoscaler poll.
SELECT queue.queued, queue.oldest_queued_at,
       (SELECT count(*) FROM tasks WHERE tasks.status = 'running') AS running,
       live.workers AS live_workers, live.slots
FROM (SELECT count(*) AS queued, min(tasks.queued_at) AS oldest_queued_at
      FROM tasks WHERE tasks.status = 'queued') AS queue,
     (SELECT count(*) AS workers, coalesce(sum(workers.slots), 0) AS slots
      FROM workers WHERE workers.last_seen >= :since) AS live;


-- Reports to Shared -------------------------------------------------------------------------------------

-- name: claim_reports
-- What the relay sends Shared now, in one statement that commits by itself (no transaction stays open while
-- Shared is called): up to :limit undelivered reports due by :now, oldest first, taken until :until (another
-- Master's relay skips them meanwhile; if this one stops before the answer, they are due again then), and up
-- to :progress_limit orders whose fruit counts changed since last reported, their flag cleared (SKIP LOCKED
-- passes over orders an exchange is counting down). Their counts are read after this commit (fruit_counts):
-- a result recorded meanwhile flags its order again, so no change goes unreported.
-- It also records the reports Shared acknowledged in the previous pass (:acknowledged, at :acknowledged_at):
-- a pass that all went well costs no statement of its own after the call.
-- The answer is one result set: `kind` tells a report and an order to count apart.
WITH acknowledged AS (
    UPDATE outbox
    SET delivered_at = CAST(:acknowledged_at AS timestamptz)
    WHERE outbox.id = ANY(CAST(:acknowledged AS integer[]))
),
due AS (
    UPDATE outbox
    SET next_attempt_at = :until
    WHERE outbox.id IN (
        SELECT outbox.id FROM outbox
        WHERE outbox.delivered_at IS NULL AND outbox.next_attempt_at <= :now
          AND NOT outbox.id = ANY(CAST(:acknowledged AS integer[]))
        ORDER BY outbox.id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING outbox.id, outbox.order_id, outbox.version, outbox.status, outbox.finished_at,
              outbox.preparation_time, outbox.failure_reason, outbox.attempts
),
changed AS (
    UPDATE salads
    SET progress_due = false
    WHERE salads.order_id IN (
        SELECT salads.order_id FROM salads
        WHERE salads.progress_due
        ORDER BY salads.order_id
        LIMIT :progress_limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING salads.order_id
)
SELECT 'report' AS kind, due.id, due.order_id, due.version, due.status, due.finished_at, due.preparation_time,
       due.failure_reason, due.attempts
FROM due
UNION ALL
SELECT 'counts', NULL, changed.order_id, NULL, NULL, NULL, NULL, NULL, NULL
FROM changed;

-- name: reports_sent
-- The outcome of sending reports :ids: those Shared acknowledged (:delivered) are delivered; the others are
-- tried again after a backoff that doubles with each attempt, from 1 s up to :max_backoff seconds.
UPDATE outbox
SET delivered_at = CASE WHEN outbox.id = ANY(CAST(:delivered AS integer[])) THEN CAST(:now AS timestamptz) END,
    attempts = outbox.attempts + CAST(NOT outbox.id = ANY(CAST(:delivered AS integer[])) AS integer),
    next_attempt_at = CASE WHEN outbox.id = ANY(CAST(:delivered AS integer[])) THEN outbox.next_attempt_at
                           ELSE CAST(:now AS timestamptz)
                                + least(:max_backoff, 0.5 * 2 ^ (outbox.attempts + 1)) * interval '1 second' END
WHERE outbox.id = ANY(CAST(:ids AS integer[]));

-- name: progress_due_again
-- Orders whose progress report did not reach Shared: flagged again, for the relay's next pass. Their countdown
-- rows are locked in order id order, as the exchange statement locks them.
UPDATE salads SET progress_due = true
WHERE salads.order_id IN (SELECT due.order_id FROM salads AS due
                          WHERE due.order_id = ANY(CAST(:ids AS integer[]))
                          ORDER BY due.order_id
                          FOR UPDATE);

-- name: fruit_counts
-- The fruits of orders :ids per state, as Shared shows them (queued, running, done, failed), with the
-- moment they were counted: Shared keeps a report's counts only if counted later than those it holds.
SELECT tasks.order_id,
       count(*) FILTER (WHERE tasks.status = 'queued') AS queued,
       count(*) FILTER (WHERE tasks.status = 'running') AS running,
       count(*) FILTER (WHERE tasks.status = 'succeeded') AS done,
       count(*) FILTER (WHERE tasks.status = 'failed') AS failed,
       statement_timestamp() AS counted_at
FROM tasks
WHERE tasks.order_id = ANY(CAST(:ids AS integer[]))
GROUP BY tasks.order_id;


-- Reads for Shared (GET /v1/progress) ------------------------------------------------------------------

-- name: order_fruits
-- Every fruit of orders :ids, in their orders' order: its state, the worker preparing (or that prepared)
-- it, its attempts, and when its lease ends (a running fruit's worker renews it). Read by
-- uq_tasks_order_position, which leads with the order.
SELECT tasks.order_id, tasks.position, tasks.fruit, tasks.status, tasks.worker, tasks.attempts,
       tasks.lease_expires_at
FROM tasks
WHERE tasks.order_id = ANY(CAST(:ids AS integer[]))
ORDER BY tasks.order_id, tasks.position;

-- name: worker_loads
-- The live workers (seen since :since) by name, with the fruits each is preparing now, counted from the
-- running tasks (read in the same snapshot as the fruits, so the two agree), and when each last checked in.
SELECT workers.name, workers.slots, coalesce(running.fruits, 0) AS busy, workers.last_seen
FROM workers
LEFT JOIN (SELECT tasks.worker, count(*) AS fruits FROM tasks WHERE tasks.status = 'running'
           GROUP BY tasks.worker) AS running ON running.worker = workers.name
WHERE workers.last_seen >= :since
ORDER BY workers.name;


-- Retention ---------------------------------------------------------------------------------------------

-- name: prune_orders
-- Delete the tasks, failed attempts, reports and countdown rows of up to :batch orders finished before
-- :older_than, oldest first. An order whose report Shared has not acknowledged yet is kept (Shared must
-- learn how it ended). Returns the orders deleted.
WITH doomed AS (
    -- The orders to delete, locked; SKIP LOCKED leaves those another Master is pruning, or an exchange
    -- counting down, to them.
    SELECT salads.order_id FROM salads
    WHERE salads.status IN ('completed', 'failed') AND salads.finished_at < :older_than
      AND salads.order_id NOT IN (SELECT outbox.order_id FROM outbox WHERE outbox.delivered_at IS NULL)
    ORDER BY salads.finished_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
),
failures AS (
    DELETE FROM task_failures WHERE task_failures.order_id IN (SELECT doomed.order_id FROM doomed)
),
fruits AS (
    DELETE FROM tasks WHERE tasks.order_id IN (SELECT doomed.order_id FROM doomed)
),
reports AS (
    DELETE FROM outbox WHERE outbox.order_id IN (SELECT doomed.order_id FROM doomed)
)
DELETE FROM salads WHERE salads.order_id IN (SELECT doomed.order_id FROM doomed)
RETURNING salads.order_id;
