-- The transaction of PUT /api/users/driver-status (users/services.py set_driver_availability),
-- for pgbench: lock, toggle and bump the driver's row in one UPDATE ... RETURNING, insert the
-- event's outbox row, commit.
-- bench/put_status.py fills bench_driver (n -> driver id) with the same 1,000 drivers.
\set n random(1, 1000)
BEGIN;
UPDATE users_user SET is_available = NOT is_available, status_version = status_version + 1, status_changed_at = now() WHERE id = (SELECT id FROM bench_driver WHERE n = :n) AND role = 'driver' RETURNING id AS driver, is_available, status_version AS version \gset
INSERT INTO events_outboxevent (event_id, topic, key, version, payload, created_at, attempts, last_error) VALUES (gen_random_uuid(), 'driver-status-changed', ':driver', :version, json_build_object('driverId', ':driver', 'available', true, 'timestamp', now(), 'eventId', gen_random_uuid(), 'version', :version)::text, now(), 0, '') RETURNING id;
COMMIT;
