package sqlite

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/heraldhq/herald/internal/store"
)

// This file holds every SQL statement the driver runs. The schema is in
// migrations/.

const (
	migrationsTableSQL = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER NOT NULL PRIMARY KEY,
	name       TEXT    NOT NULL,
	applied_at INTEGER NOT NULL
)`
	migrationsAppliedSQL = `SELECT version FROM schema_migrations`
	migrationRecordSQL   = `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`

	subscriptionColumns = `id, state, document, created_at, updated_at`

	subscriptionInsertSQL = `INSERT INTO subscriptions (` + subscriptionColumns + `) VALUES (?, ?, ?, ?, ?)`
	subscriptionGetSQL    = `SELECT ` + subscriptionColumns + ` FROM subscriptions WHERE id = ?`
	// subscriptionListSQL takes ?1 after, ?2 limit, ?3 tenant ('': any);
	// subscriptions stored before tenants existed are the default tenant's.
	subscriptionListSQL = `SELECT ` + subscriptionColumns + ` FROM subscriptions
WHERE id > ?1 AND (?3 = '' OR coalesce(json_extract(document, '$.tenant'), '` + store.DefaultTenant + `') = ?3)`
	// subscriptionLabelSQL is one label condition (a key, then a value)
	// added to subscriptionListSQL, and subscriptionListEndSQL ends it.
	subscriptionLabelSQL   = ` AND json_extract(document, '$.labels.' || json_quote(?)) = ?`
	subscriptionListEndSQL = ` ORDER BY id LIMIT ?2`
	// subscriptionUpdateSQL keeps the stored created_at and returns it.
	subscriptionUpdateSQL = `UPDATE subscriptions SET state = ?, document = ?, updated_at = ? WHERE id = ? RETURNING created_at`
	subscriptionDeleteSQL = `DELETE FROM subscriptions WHERE id = ?`

	subscriptionsVersionBumpSQL = `UPDATE subscriptions_version SET version = version + 1 WHERE singleton = 1`
	subscriptionsVersionSQL     = `SELECT version FROM subscriptions_version WHERE singleton = 1`
	// subscriptionStampSQL marks a written subscription with the version
	// its write made (run after subscriptionsVersionBumpSQL);
	// subscriptionTombstoneSQL records a deletion the same way.
	subscriptionStampSQL     = `UPDATE subscriptions SET seq = (SELECT version FROM subscriptions_version WHERE singleton = 1) WHERE id = ?`
	subscriptionTombstoneSQL = `INSERT INTO subscription_tombstones (id, seq) VALUES (?, (SELECT version FROM subscriptions_version WHERE singleton = 1))
ON CONFLICT (id) DO UPDATE SET seq = excluded.seq`
	subscriptionsChangedSQL = `SELECT ` + subscriptionColumns + ` FROM subscriptions WHERE seq > ? ORDER BY seq`
	subscriptionsDeletedSQL = `SELECT id FROM subscription_tombstones WHERE seq > ? ORDER BY seq`

	// eventDeliveryIDsSQL returns a stored event's delivery IDs,
	// space-separated in the order they were inserted.
	eventDeliveryIDsSQL = `SELECT delivery_ids FROM events WHERE tenant = ? AND source = ? AND id = ?`

	apiKeyColumns   = `id, hash, document, created_at`
	apiKeyInsertSQL = `INSERT INTO api_keys (` + apiKeyColumns + `) VALUES (?, ?, ?, ?)`
	apiKeyListSQL   = `SELECT ` + apiKeyColumns + ` FROM api_keys ORDER BY id`
	apiKeyDeleteSQL = `DELETE FROM api_keys WHERE id = ?`

	apiKeysVersionBumpSQL = `UPDATE api_keys_version SET version = version + 1 WHERE singleton = 1`
	apiKeysVersionSQL     = `SELECT version FROM api_keys_version WHERE singleton = 1`

	// deliveryColumns are read by scanDelivery, with the event's columns
	// from events e.
	deliveryColumns = `d.id, d.subscription_id, e.source, e.id, e.type, d.state, d.attempts,
d.last_status, d.last_error, d.next_at, d.lease_until, d.created_at, d.updated_at, d.holder`

	// deliveryClaimSQL takes ?1 now, ?2 limit, ?3 lease_until, ?4 holder.
	// Each branch is limited on its own index before the two are merged in
	// next_at order. The single writer connection makes the claim atomic.
	// The events are read afterwards from the read pool (claimEventsSQL),
	// so the writer spends no time on them.
	deliveryClaimSQL = `UPDATE deliveries SET state = 'in_flight', lease_until = ?3, holder = ?4, updated_at = ?1
WHERE pk IN (
	SELECT pk FROM (
		SELECT pk, next_at, id FROM (
			SELECT pk, next_at, id FROM deliveries
			WHERE state = 'pending' AND next_at <= ?1
			ORDER BY next_at, id LIMIT ?2)
		UNION ALL
		SELECT pk, next_at, id FROM (
			SELECT pk, next_at, id FROM deliveries
			WHERE state = 'in_flight' AND lease_until <= ?1
			ORDER BY next_at, id LIMIT ?2)
		ORDER BY next_at, id LIMIT ?2))
RETURNING id, subscription_id, event_seq,
	state, attempts, last_status, last_error, next_at, lease_until, created_at, updated_at, holder`

	// deliveryRenewSQL takes ?1 lease_until, ?2 the IDs as a JSON array,
	// ?3 holder, and returns the IDs it renewed.
	deliveryRenewSQL = `UPDATE deliveries SET lease_until = ?1
WHERE id IN (SELECT value FROM json_each(?2)) AND state = 'in_flight' AND holder = ?3
RETURNING id`
	// deliveryReleaseSQL takes ?1 next_at, ?2 updated_at, ?3 holder; the
	// in-flight deliveries are found through their claim index.
	deliveryReleaseSQL = `UPDATE deliveries INDEXED BY deliveries_in_flight
SET state = 'pending', next_at = ?1, lease_until = 0, holder = '', updated_at = ?2
WHERE state = 'in_flight' AND holder = ?3`

	// claimEventsSQL reads the events of claimed deliveries, by seq; the
	// caller appends one "?" per seq and ")".
	claimEventsSQL = `SELECT seq, source, id, type, payload FROM events WHERE seq IN (`

	deliveryExistsSQL = `SELECT 1 FROM deliveries WHERE id = ?`

	// attemptListSQL reads the first attempt from the delivery's row and
	// the later ones from attempts.
	attemptListSQL = `SELECT id, 1, first_started_at, first_status_code, first_latency, first_error, first_response_body
FROM deliveries WHERE id = ?1 AND first_started_at IS NOT NULL
UNION ALL
SELECT delivery_id, number, started_at, status_code, latency, error, response_body
FROM attempts WHERE delivery_id = ?1
ORDER BY 2` // the attempt number

	// firstAttemptSQL records a delivery's first attempt in its row.
	firstAttemptSQL = `UPDATE deliveries SET first_started_at = ?, first_status_code = ?,
	first_latency = ?, first_error = ?, first_response_body = ? WHERE id = ?`

	deliveryGetSQL = `SELECT ` + deliveryColumns + `, e.payload
FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.id = ?`
)

// eventInsertSQL inserts n events, skipping those stored already, and
// returns the inserted ones' seq, source and id.
func eventInsertSQL(n int) string {
	return multiRowSQL(`INSERT INTO events (tenant, source, id, type, subject, created_at, delivery_ids, payload) VALUES `,
		"(?, ?, ?, ?, ?, ?, ?, ?)", n, ` ON CONFLICT (tenant, source, id) DO NOTHING RETURNING seq, tenant, source, id`)
}

// deliveryUpdateManySQL applies n updates given as rows of (id, state,
// attempts, last_status, last_error, next_at, expected state or ”,
// expected holder or ”), all then updated_at, and returns the IDs it
// updated. A delivery that leaves in_flight loses its lease and holder.
// The rows must name distinct deliveries.
func deliveryUpdateManySQL(n int) string {
	return multiRowSQL(`WITH u (id, state, attempts, last_status, last_error, next_at, expect, expect_holder) AS (VALUES `,
		"(?, ?, ?, ?, ?, ?, ?, ?)", n, `)
UPDATE deliveries SET `+deliveryUpdateSet+deliveryUpdateWhere)
}

// deliveryUpdateFirstManySQL is deliveryUpdateManySQL with each row's
// first attempt (started_at, status_code, latency, error, response_body)
// after its expected holder.
func deliveryUpdateFirstManySQL(n int) string {
	return multiRowSQL(`WITH u (id, state, attempts, last_status, last_error, next_at, expect, expect_holder,
	a_started_at, a_status_code, a_latency, a_error, a_response_body) AS (VALUES `,
		"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", n, `)
UPDATE deliveries SET `+deliveryUpdateSet+`,
	first_started_at = u.a_started_at, first_status_code = u.a_status_code,
	first_latency = u.a_latency, first_error = u.a_error, first_response_body = u.a_response_body`+
			deliveryUpdateWhere)
}

// deliveryUpdateSet and deliveryUpdateWhere are the parts the two
// statements above share.
const (
	deliveryUpdateSet = `state = u.state, attempts = u.attempts, last_status = u.last_status,
	last_error = u.last_error, next_at = u.next_at, updated_at = ?,
	lease_until = CASE WHEN u.state = 'in_flight' THEN deliveries.lease_until ELSE 0 END,
	holder = CASE WHEN u.state = 'in_flight' THEN deliveries.holder ELSE '' END`
	deliveryUpdateWhere = `
FROM u WHERE deliveries.id = u.id AND (u.expect = '' OR deliveries.state = u.expect)
	AND (u.expect_holder = '' OR deliveries.holder = u.expect_holder)
RETURNING deliveries.id`
)

// attemptUpsertManySQL records n attempts; recording an attempt number
// that exists replaces it.
func attemptUpsertManySQL(n int) string {
	return multiRowSQL(`INSERT INTO attempts
	(delivery_id, number, started_at, status_code, latency, error, response_body) VALUES `,
		"(?, ?, ?, ?, ?, ?, ?)", n, `
ON CONFLICT (delivery_id, number) DO UPDATE SET
	started_at = excluded.started_at, status_code = excluded.status_code,
	latency = excluded.latency, error = excluded.error,
	response_body = excluded.response_body`)
}

// deliveryInsertSQL inserts n deliveries.
func deliveryInsertSQL(n int) string {
	return multiRowSQL(`INSERT INTO deliveries (id, subscription_id, event_seq, state, attempts,
	last_status, last_error, next_at, lease_until, created_at, updated_at, holder) VALUES `,
		"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", n, "")
}

func multiRowSQL(head, row string, n int, tail string) string {
	var b strings.Builder
	b.Grow(len(head) + n*(len(row)+1) + len(tail))
	b.WriteString(head)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	b.WriteString(tail)
	return b.String()
}

// deliveryListSQL returns DeliveryList's query for p, with a condition
// for each filter that is set, and its arguments. The state is written
// into the query, so that SQLite can pick the partial index that holds
// it; it must be a store.DeliveryState (DeliveryList checks).
func deliveryListSQL(p store.DeliveryListParams) (string, []any, error) {
	var (
		b    strings.Builder
		args []any
	)
	b.WriteString(`SELECT ` + deliveryColumns + `
FROM deliveries d`)
	// Without statistics SQLite would walk every delivery in ID order to
	// find the few pending or in flight; their claim indexes hold exactly
	// them.
	switch {
	case p.SubscriptionID != "":
	case p.State == store.DeliveryPending:
		b.WriteString(` INDEXED BY deliveries_pending`)
	case p.State == store.DeliveryInFlight:
		b.WriteString(` INDEXED BY deliveries_in_flight`)
	}
	b.WriteString(` JOIN events e ON e.seq = d.event_seq WHERE 1`)
	cond := func(set bool, expr string, arg any) {
		if set {
			b.WriteString(" AND " + expr)
			args = append(args, arg)
		}
	}
	jsonList := func(list []string) (string, error) {
		j, err := json.Marshal(list)
		return string(j), err
	}
	cond(p.SubscriptionID != "", "d.subscription_id = ?", p.SubscriptionID)
	if p.SubscriptionIDs != nil {
		ids, err := jsonList(p.SubscriptionIDs)
		if err != nil {
			return "", nil, err
		}
		cond(true, "d.subscription_id IN (SELECT value FROM json_each(?))", ids)
	}
	if p.State != "" {
		b.WriteString(` AND d.state = '` + string(p.State) + `'`)
	}
	cond(!p.CreatedFrom.IsZero(), "d.created_at >= ?", millis(p.CreatedFrom))
	cond(!p.CreatedTo.IsZero(), "d.created_at < ?", millis(p.CreatedTo))
	if len(p.EventTypes) > 0 {
		types, err := jsonList(p.EventTypes)
		if err != nil {
			return "", nil, err
		}
		cond(true, "e.type IN (SELECT value FROM json_each(?))", types)
	}
	cond(p.EventSource != "", "e.source = ?", p.EventSource)
	cond(p.EventID != "", "e.id = ?", p.EventID)
	if lo, hi, ok := p.LastStatus.StatusRange(); ok {
		b.WriteString(" AND d.last_status >= " + strconv.Itoa(lo) + " AND d.last_status < " + strconv.Itoa(hi))
	} else if p.LastStatus == store.NoResponse {
		b.WriteString(" AND d.attempts > 0 AND d.last_status = 0")
	}
	cond(p.After != "", "d.id < ?", p.After)
	b.WriteString(` ORDER BY d.id DESC LIMIT ?`)
	return b.String(), append(args, p.Limit), nil
}
