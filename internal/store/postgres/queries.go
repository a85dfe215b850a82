package postgres

import (
	"strconv"
	"strings"

	"github.com/heraldhq/herald/internal/store"
)

// This file holds every SQL statement the driver runs. The schema is in
// migrations/. pgx prepares and caches each statement per connection.

const (
	// migrateLockSQL serializes migrations between processes sharing a
	// database.
	migrateLockSQL     = `SELECT pg_advisory_xact_lock(hashtext('herald.schema_migrations'))`
	migrationsTableSQL = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    integer     NOT NULL PRIMARY KEY,
	name       text        NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`
	migrationsAppliedSQL = `SELECT version FROM schema_migrations`
	migrationRecordSQL   = `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`

	subscriptionColumns = `id, state, document, created_at, updated_at`

	subscriptionInsertSQL = `INSERT INTO subscriptions (` + subscriptionColumns + `) VALUES ($1, $2, $3, $4, $5)`
	subscriptionGetSQL    = `SELECT ` + subscriptionColumns + ` FROM subscriptions WHERE id = $1`
	// subscriptionListSQL takes $1 after, $2 limit (NULL for all), $3
	// tenant ('': any); subscriptions stored before tenants existed are
	// the default tenant's.
	subscriptionListSQL = `SELECT ` + subscriptionColumns + ` FROM subscriptions
WHERE id > $1 AND ($3 = '' OR coalesce(document->>'tenant', '` + store.DefaultTenant + `') = $3)`
	// subscriptionUpdateSQL keeps the stored created_at and returns it.
	subscriptionUpdateSQL = `UPDATE subscriptions SET state = $1, document = $2, updated_at = $3 WHERE id = $4 RETURNING created_at`
	subscriptionDeleteSQL = `DELETE FROM subscriptions WHERE id = $1`

	subscriptionsVersionBumpSQL = `UPDATE subscriptions_version SET version = version + 1`
	subscriptionsVersionSQL     = `SELECT version FROM subscriptions_version`
	// subscriptionStampSQL marks a written subscription with the version
	// its write made (run after subscriptionsVersionBumpSQL);
	// subscriptionTombstoneSQL records a deletion the same way.
	subscriptionStampSQL     = `UPDATE subscriptions SET seq = (SELECT version FROM subscriptions_version) WHERE id = $1`
	subscriptionTombstoneSQL = `INSERT INTO subscription_tombstones (id, seq) VALUES ($1, (SELECT version FROM subscriptions_version))
ON CONFLICT (id) DO UPDATE SET seq = excluded.seq`
	subscriptionsChangedSQL = `SELECT ` + subscriptionColumns + ` FROM subscriptions WHERE seq > $1 ORDER BY seq`
	subscriptionsDeletedSQL = `SELECT id FROM subscription_tombstones WHERE seq > $1 ORDER BY seq`

	apiKeyColumns   = `id, hash, document, created_at`
	apiKeyInsertSQL = `INSERT INTO api_keys (` + apiKeyColumns + `) VALUES ($1, $2, $3, $4)`
	apiKeyListSQL   = `SELECT ` + apiKeyColumns + ` FROM api_keys ORDER BY id`
	apiKeyDeleteSQL = `DELETE FROM api_keys WHERE id = $1`

	apiKeysVersionBumpSQL = `UPDATE api_keys_version SET version = version + 1`
	apiKeysVersionSQL     = `SELECT version FROM api_keys_version`

	// eventInsertSQL inserts events from parallel arrays ($1-$5, $19 the
	// tenant and $21 the subject), skipping those stored already, and the deliveries
	// ($6-$18, $20 and $22, each with its event's source, id and tenant) of
	// the events it inserted, and returns the inserted events' tenant,
	// source and id. One statement is one implicit
	// transaction and one round trip; the deliveries' foreign key is
	// checked at its end, when the events are in.
	eventInsertSQL = `WITH e AS (
	INSERT INTO events (source, id, type, created_at, payload, tenant, subject)
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bytea[], $19::text[], $21::text[])
	ON CONFLICT (tenant, source, id) DO NOTHING
	RETURNING seq, tenant, source, id
), d AS (
	INSERT INTO deliveries (id, subscription_id, event_seq, position, state,
		attempts, last_status, last_error, next_at, lease_until, created_at, updated_at, holder)
	SELECT u.id, u.subscription_id, e.seq, u.position, u.state,
		u.attempts, u.last_status, u.last_error, u.next_at, u.lease_until, u.created_at, u.updated_at, u.holder
	FROM unnest($6::text[], $7::text[], $8::text[], $9::text[], $10::integer[], $11::text[],
		$12::integer[], $13::integer[], $14::text[], $15::timestamptz[], $16::timestamptz[],
		$17::timestamptz[], $18::timestamptz[], $20::text[], $22::text[])
		AS u (id, subscription_id, event_source, event_id, position, state,
			attempts, last_status, last_error, next_at, lease_until, created_at, updated_at, event_tenant, holder)
	JOIN e ON e.tenant = u.event_tenant AND e.source = u.event_source AND e.id = u.event_id
)
SELECT tenant, source, id FROM e`

	// eventDeliveryIDsSQL lists stored events' deliveries, each event's in
	// the order they were inserted.
	eventDeliveryIDsSQL = `SELECT e.tenant, e.source, e.id, d.id
FROM unnest($1::text[], $2::text[], $3::text[]) AS k (tenant, source, id)
JOIN events e ON e.tenant = k.tenant AND e.source = k.source AND e.id = k.id
JOIN deliveries d ON d.event_seq = e.seq
ORDER BY d.event_seq, d.position`

	// deliveryColumns are read by scanDelivery, with the event's columns
	// from events e.
	deliveryColumns = `d.id, d.subscription_id, e.source, e.id, e.type, d.state, d.attempts,
d.last_status, d.last_error, d.next_at, d.lease_until, d.created_at, d.updated_at, d.holder`

	// deliveryClaimSQL takes $1 now, $2 limit, $3 lease_until, $4 holder.
	// Rows other claimers hold are skipped, so concurrent claims never
	// overlap.
	deliveryClaimSQL = `WITH claimable AS (
	SELECT id FROM deliveries
	WHERE state IN ('pending', 'in_flight')
		AND ((state = 'pending' AND next_at <= $1) OR (state = 'in_flight' AND lease_until <= $1))
	ORDER BY next_at, id
	LIMIT $2
	FOR UPDATE SKIP LOCKED
)
UPDATE deliveries d SET state = 'in_flight', lease_until = $3, holder = $4, updated_at = $1
FROM claimable c, events e
WHERE d.id = c.id AND e.seq = d.event_seq
RETURNING ` + deliveryColumns + `, e.payload`

	// deliveryRenewSQL takes $1 lease_until, $2 the IDs, $3 holder, and
	// returns the IDs it renewed.
	deliveryRenewSQL = `UPDATE deliveries SET lease_until = $1
WHERE id = ANY($2::text[]) AND state = 'in_flight' AND holder = $3
RETURNING id`
	// deliveryReleaseSQL takes $1 holder, $2 next_at, $3 updated_at.
	deliveryReleaseSQL = `UPDATE deliveries
SET state = 'pending', next_at = $2, lease_until = '0001-01-01 00:00:00+00', holder = '', updated_at = $3
WHERE state = 'in_flight' AND holder = $1`

	// deliveryUpdateSQL takes $1 state, $2 attempts, $3 last_status,
	// $4 last_error, $5 next_at, $6 updated_at, $7 id, $8 expected state
	// or '', $9 expected holder or ''. A delivery that leaves in_flight
	// loses its lease and holder.
	deliveryUpdateSQL = `UPDATE deliveries SET state = $1, attempts = $2, last_status = $3,
	last_error = $4, next_at = $5, updated_at = $6,
	lease_until = CASE WHEN $1 = 'in_flight' THEN lease_until ELSE '0001-01-01 00:00:00+00' END,
	holder = CASE WHEN $1 = 'in_flight' THEN holder ELSE '' END
WHERE id = $7 AND ($8 = '' OR state = $8) AND ($9 = '' OR holder = $9)`
	// deliveryUpdateManySQL is deliveryUpdateSQL for arrays of distinct
	// deliveries: $1 id, $2 state, $3 attempts, $4 last_status,
	// $5 last_error, $6 next_at, $7 expected state or '', $15 expected
	// holder or '', and $8 updated_at; where $9 is true, $10-$14 are the
	// first attempt to keep in the row (started_at, status_code, latency,
	// error, response_body). It returns the IDs of the deliveries it
	// changed.
	deliveryUpdateManySQL = `UPDATE deliveries d SET state = u.state, attempts = u.attempts,
	last_status = u.last_status, last_error = u.last_error, next_at = u.next_at, updated_at = $8,
	lease_until = CASE WHEN u.state = 'in_flight' THEN d.lease_until ELSE '0001-01-01 00:00:00+00' END,
	holder = CASE WHEN u.state = 'in_flight' THEN d.holder ELSE '' END,
	first_started_at = CASE WHEN u.first THEN u.a_started_at ELSE d.first_started_at END,
	first_status_code = CASE WHEN u.first THEN u.a_status_code ELSE d.first_status_code END,
	first_latency = CASE WHEN u.first THEN u.a_latency ELSE d.first_latency END,
	first_error = CASE WHEN u.first THEN u.a_error ELSE d.first_error END,
	first_response_body = CASE WHEN u.first THEN u.a_response_body ELSE d.first_response_body END
FROM unnest($1::text[], $2::text[], $3::integer[], $4::integer[], $5::text[], $6::timestamptz[], $7::text[],
		$9::boolean[], $10::timestamptz[], $11::integer[], $12::bigint[], $13::text[], $14::bytea[], $15::text[])
	AS u (id, state, attempts, last_status, last_error, next_at, expect,
		first, a_started_at, a_status_code, a_latency, a_error, a_response_body, expect_holder)
WHERE d.id = u.id AND (u.expect = '' OR d.state = u.expect) AND (u.expect_holder = '' OR d.holder = u.expect_holder)
RETURNING d.id`
	// firstAttemptSQL records a delivery's first attempt in its row:
	// $1 id, then started_at, status_code, latency, error, response_body.
	firstAttemptSQL = `UPDATE deliveries SET first_started_at = $2, first_status_code = $3,
	first_latency = $4, first_error = $5, first_response_body = $6 WHERE id = $1`
	// firstAttemptManySQL is firstAttemptSQL for arrays of distinct
	// deliveries. It returns the IDs of the deliveries it changed.
	firstAttemptManySQL = `UPDATE deliveries d SET first_started_at = u.started_at,
	first_status_code = u.status_code, first_latency = u.latency, first_error = u.error,
	first_response_body = u.response_body
FROM unnest($1::text[], $2::timestamptz[], $3::integer[], $4::bigint[], $5::text[], $6::bytea[])
	AS u (id, started_at, status_code, latency, error, response_body)
WHERE d.id = u.id
RETURNING d.id`
	deliveriesExistingSQL = `SELECT id FROM deliveries WHERE id = ANY($1)`

	// attemptUpsertSQL records a later attempt (number 2 and up); the
	// first is kept in its delivery's row.
	attemptUpsertSQL = `INSERT INTO attempts
	(delivery_id, number, started_at, status_code, latency, error, response_body)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (delivery_id, number) DO UPDATE SET
	started_at = excluded.started_at, status_code = excluded.status_code,
	latency = excluded.latency, error = excluded.error,
	response_body = excluded.response_body`
	// attemptUpsertManySQL is attemptUpsertSQL for arrays of attempts with
	// distinct keys.
	attemptUpsertManySQL = `INSERT INTO attempts
	(delivery_id, number, started_at, status_code, latency, error, response_body)
SELECT * FROM unnest($1::text[], $2::integer[], $3::timestamptz[], $4::integer[], $5::bigint[], $6::text[], $7::bytea[])
ON CONFLICT (delivery_id, number) DO UPDATE SET
	started_at = excluded.started_at, status_code = excluded.status_code,
	latency = excluded.latency, error = excluded.error,
	response_body = excluded.response_body`
	// attemptListSQL reads the first attempt from the delivery's row and
	// the later ones from attempts.
	attemptListSQL = `SELECT id, 1, first_started_at, first_status_code, first_latency, first_error, first_response_body
FROM deliveries WHERE id = $1 AND first_started_at IS NOT NULL
UNION ALL
SELECT delivery_id, number, started_at, status_code, latency, error, response_body
FROM attempts WHERE delivery_id = $1
ORDER BY 2` // the attempt number

	deliveryGetSQL = `SELECT ` + deliveryColumns + `, e.payload
FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.id = $1`
)

// deliveryListSQL builds DeliveryList's query with a condition for each
// filter that is set, in the order the arguments are given: subscription,
// state, created from, created to, after; the limit is the last argument.
// Building the query, rather than writing "$1 IS NULL OR ...", lets the
// planner pick the index for the filters in use.
// deliveryListSQL returns the query of DeliveryList for p and its
// arguments, each filter a parameter.
func deliveryListSQL(p store.DeliveryListParams) (string, []any) {
	var (
		b    strings.Builder
		args []any
	)
	b.WriteString(`SELECT ` + deliveryColumns + `
FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE true`)
	// cond adds expr with arg's parameter number in place of "$".
	cond := func(set bool, expr string, arg any) {
		if set {
			args = append(args, arg)
			b.WriteString(" AND " + strings.Replace(expr, "$", "$"+strconv.Itoa(len(args)), 1))
		}
	}
	cond(p.SubscriptionID != "", "d.subscription_id = $", p.SubscriptionID)
	cond(p.SubscriptionIDs != nil, "d.subscription_id = ANY($::text[])", p.SubscriptionIDs)
	cond(p.State != "", "d.state = $", string(p.State))
	cond(!p.CreatedFrom.IsZero(), "d.created_at >= $", p.CreatedFrom)
	cond(!p.CreatedTo.IsZero(), "d.created_at < $", p.CreatedTo)
	cond(len(p.EventTypes) > 0, "e.type = ANY($::text[])", p.EventTypes)
	cond(p.EventSource != "", "e.source = $", p.EventSource)
	cond(p.EventID != "", "e.id = $", p.EventID)
	if lo, hi, ok := p.LastStatus.StatusRange(); ok {
		b.WriteString(" AND d.last_status >= " + strconv.Itoa(lo) + " AND d.last_status < " + strconv.Itoa(hi))
	} else if p.LastStatus == store.NoResponse {
		b.WriteString(" AND d.attempts > 0 AND d.last_status = 0")
	}
	cond(p.After != "", "d.id < $", p.After)
	args = append(args, p.Limit)
	b.WriteString(" ORDER BY d.id DESC LIMIT $" + strconv.Itoa(len(args)))
	return b.String(), args
}
