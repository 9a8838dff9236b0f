-- The transaction of PUT /api/users/driver-status (users/services.py set_driver_availability),
-- for pgbench: lock the driver's row, toggle it, insert the event's outbox row, commit.
-- bench/put_status.py fills bench_driver (n -> driver id) with the same 1,000 drivers.
\set n random(1, 1000)
BEGIN;
SELECT u.id AS driver, u.status_version + 1 AS version FROM users_user u WHERE u.id = (SELECT id FROM bench_driver WHERE n = :n) FOR UPDATE \gset
UPDATE users_user SET is_available = NOT is_available, status_version = status_version + 1, status_changed_at = now() WHERE id = ':driver';
INSERT INTO events_outboxevent (event_id, topic, key, version, payload, created_at, attempts, last_error) VALUES (gen_random_uuid(), 'driver-status-changed', ':driver', :version, json_build_object('driverId', ':driver', 'available', true, 'timestamp', now(), 'eventId', gen_random_uuid(), 'version', :version)::text, now(), 0, '') RETURNING id;
COMMIT;
