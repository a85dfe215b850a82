package lifecycle

import (
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/store"
)

func TestConstructors_MakeOnlyTransitionsOfTheTable(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	claimed := &store.Delivery{ID: "dlv_1", State: InFlight, Attempts: 2, LastStatus: 500, LastError: "boom", Holder: "node-a"}
	rec := &store.Attempt{DeliveryID: "dlv_1", Number: 3, StatusCode: 503, Error: "busy"}
	ok := &store.Attempt{DeliveryID: "dlv_1", Number: 3, StatusCode: 204}
	dead := &store.Delivery{ID: "dlv_1", State: Dead, Attempts: 8, LastStatus: 400}
	redriven, err := Redriven(dead)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		u          store.DeliveryUpdate
		transition string
		from       State // the state the update expects, or for the workflow's own updates the state it is made from
		want       store.DeliveryUpdate
	}{
		{"rescheduled", Rescheduled(claimed, now, ""), Reschedule, InFlight,
			store.DeliveryUpdate{ID: "dlv_1", State: Pending, Attempts: 2, LastStatus: 500, LastError: "boom", NextAt: now, ExpectState: InFlight, ExpectHolder: "node-a"}},
		{"rescheduled with a reason", Rescheduled(claimed, now, "why"), Reschedule, InFlight,
			store.DeliveryUpdate{ID: "dlv_1", State: Pending, Attempts: 2, LastStatus: 500, LastError: "why", NextAt: now, ExpectState: InFlight, ExpectHolder: "node-a"}},
		{"first delivered", FirstDelivered(claimed, ok), Deliver, InFlight,
			store.DeliveryUpdate{ID: "dlv_1", State: Delivered, Attempts: 3, LastStatus: 204, ExpectState: InFlight, ExpectHolder: "node-a", Attempt: ok}},
		{"deferred", Deferred(claimed, rec, now), Defer, InFlight,
			store.DeliveryUpdate{ID: "dlv_1", State: Pending, Attempts: 3, LastStatus: 503, LastError: "busy", NextAt: now, ExpectState: InFlight, ExpectHolder: "node-a", Attempt: rec}},
		{"kept", Kept(claimed, rec), Keep, InFlight,
			store.DeliveryUpdate{ID: "dlv_1", State: InFlight, Attempts: 3, LastStatus: 503, LastError: "busy", ExpectState: InFlight, ExpectHolder: "node-a", Attempt: rec}},
		{"handed off", HandedOff(claimed, rec), HandOff, InFlight,
			store.DeliveryUpdate{ID: "dlv_1", State: Retrying, Attempts: 3, LastStatus: 503, LastError: "busy", ExpectState: InFlight, ExpectHolder: "node-a", Attempt: rec}},
		{"killed", Killed(claimed, ReasonDeleted), Kill, InFlight,
			store.DeliveryUpdate{ID: "dlv_1", State: Dead, Attempts: 2, LastError: ReasonDeleted, ExpectState: InFlight, ExpectHolder: "node-a"}},
		{"attempted, failed", Attempted("dlv_1", rec, false), Retry, Retrying,
			store.DeliveryUpdate{ID: "dlv_1", State: Retrying, Attempts: 3, LastStatus: 503, LastError: "busy", Attempt: rec}},
		{"attempted, delivered", Attempted("dlv_1", ok, true), Deliver, Retrying,
			store.DeliveryUpdate{ID: "dlv_1", State: Delivered, Attempts: 3, LastStatus: 204, Attempt: ok}},
		{"dead-lettered", DeadLettered("dlv_1", 8, 500, "8 attempts failed"), Kill, Retrying,
			store.DeliveryUpdate{ID: "dlv_1", State: Dead, Attempts: 8, LastStatus: 500, LastError: "8 attempts failed"}},
		{"redriven", redriven, Redrive, Dead,
			store.DeliveryUpdate{ID: "dlv_1", State: Retrying, Attempts: 8, LastStatus: 400, ExpectState: Dead}},
		{"resumed", Resumed(dead), Redrive, Dead,
			store.DeliveryUpdate{ID: "dlv_1", State: Retrying, Attempts: 8, LastStatus: 400}},
		{"held back", HeldBack(claimed), Hold, InFlight,
			store.DeliveryUpdate{ID: "dlv_1", State: Held, Attempts: 2, LastStatus: 500, LastError: "boom", ExpectState: InFlight, ExpectHolder: "node-a"}},
		{"parked", Parked(&store.Delivery{ID: "dlv_1", State: Retrying, Attempts: 4, LastStatus: 500, LastError: "boom"}), Hold, Retrying,
			store.DeliveryUpdate{ID: "dlv_1", State: Held, Attempts: 4, LastStatus: 500, LastError: "boom"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !equalUpdate(tt.u, tt.want) {
				t.Errorf("update = %+v\nwant     %+v", tt.u, tt.want)
			}
			to, err := Check(tt.transition, tt.from)
			if err != nil {
				t.Fatalf("%s from %s is not in the table: %v", tt.transition, tt.from, err)
			}
			if to != tt.u.State {
				t.Errorf("%s from %s leads to %s in the table, the update makes %s", tt.transition, tt.from, to, tt.u.State)
			}
		})
	}
}

func equalUpdate(a, b store.DeliveryUpdate) bool {
	return a.ID == b.ID && a.State == b.State && a.Attempts == b.Attempts && a.LastStatus == b.LastStatus &&
		a.LastError == b.LastError && a.NextAt.Equal(b.NextAt) && a.ExpectState == b.ExpectState && a.ExpectHolder == b.ExpectHolder && a.Attempt == b.Attempt
}

func TestCheck_RefusesWhatTheTableDoesNotAllow(t *testing.T) {
	states := []State{Pending, InFlight, Delivered, Retrying, Dead, Held}
	names := []string{Claim, Keep, Reschedule, Defer, Deliver, HandOff, Retry, Kill, Redrive, Resend, Hold, Release}
	allowed := 0
	for _, name := range names {
		for _, from := range states {
			_, err := Check(name, from)
			inTable := slices.ContainsFunc(Table, func(tr Transition) bool { return tr.Name == name && tr.From == from })
			if inTable != (err == nil) {
				t.Errorf("Check(%s, %s) = %v; in table %v", name, from, err, inTable)
			}
			if err != nil && !errors.Is(err, ErrIllegal) {
				t.Errorf("Check(%s, %s) error %v is not ErrIllegal", name, from, err)
			}
			if inTable {
				allowed++
			}
		}
	}
	if allowed != len(Table) {
		t.Errorf("%d transitions allowed, the table has %d", allowed, len(Table))
	}
	// A held delivery leaves only by release, to a first attempt.
	for _, tr := range Table {
		if tr.From == Held && (tr.Name != Release || tr.To != Pending) {
			t.Errorf("the table lets a held delivery %s to %s", tr.Name, tr.To)
		}
	}
	// Nothing leaves delivered but an operator's resend.
	for _, tr := range Table {
		if tr.From == Delivered && tr.Name != Resend {
			t.Errorf("the table lets a delivered delivery %s to %s", tr.Name, tr.To)
		}
	}
}

func TestResent_TakesDeliveredAndDeadAndRefusesTheRest(t *testing.T) {
	for _, s := range []State{Delivered, Dead} {
		u, err := Resent(&store.Delivery{ID: "dlv_1", State: s, Attempts: 3, LastStatus: 500})
		if err != nil || u.State != Retrying || u.ExpectState != s || u.Attempts != 3 {
			t.Errorf("Resent(%s) = %+v, %v; want retrying, applied only while %s", s, u, err, s)
		}
	}
	for _, s := range []State{Pending, InFlight, Retrying} {
		if _, err := Resent(&store.Delivery{ID: "dlv_1", State: s}); !errors.Is(err, ErrIllegal) {
			t.Errorf("Resent(%s) = %v, want ErrIllegal", s, err)
		}
	}
}

func TestRedriven_RefusesADeliveryThatIsNotDead(t *testing.T) {
	for _, s := range []State{Pending, InFlight, Delivered, Retrying} {
		_, err := Redriven(&store.Delivery{ID: "dlv_1", State: s})
		if !errors.Is(err, ErrIllegal) || !strings.Contains(err.Error(), "only dead deliveries can be redriven") {
			t.Errorf("Redriven(%s) = %v, want ErrIllegal saying why", s, err)
		}
	}
}

func TestMust_PanicsOnAnIllegalTransition(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("an illegal transition did not panic")
		}
	}()
	must(Deliver, Delivered, store.DeliveryUpdate{})
}

// TestDoc_MatchesTheTable: the package doc lists exactly the transitions
// of Table.
func TestDoc_MatchesTheTable(t *testing.T) {
	src, err := os.ReadFile("lifecycle.go")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^//\t(\w+)\s+-> (\w+)\s+([a-z ]+):`)
	var doc []Transition
	for _, m := range line.FindAllStringSubmatch(string(src), -1) {
		doc = append(doc, Transition{Name: strings.TrimSpace(m[3]), From: State(m[1]), To: State(m[2])})
	}
	if len(doc) != len(Table) {
		t.Fatalf("the doc lists %d transitions, the table has %d: %v", len(doc), len(Table), doc)
	}
	for _, tr := range Table {
		if !slices.Contains(doc, tr) {
			t.Errorf("transition %+v is not in the package doc", tr)
		}
	}
}

func TestGate(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	active := &store.Subscription{State: store.SubscriptionActive}
	tests := []struct {
		name        string
		sub         *store.Subscription
		pausedUntil time.Time
		want        Decision
	}{
		{"deleted", nil, time.Time{}, Decision{Verdict: Drop, Reason: ReasonDeleted}},
		{"disabled", &store.Subscription{State: store.SubscriptionDisabled, StateReason: "sink answered 410 Gone"}, time.Time{},
			Decision{Verdict: Withhold, Reason: "subscription disabled: sink answered 410 Gone"}},
		{"suspended", &store.Subscription{State: store.SubscriptionSuspended, StateReason: "failing since"}, time.Time{},
			Decision{Verdict: Withhold, Reason: "subscription suspended: failing since"}},
		{"awaiting consent", &store.Subscription{State: store.SubscriptionPendingValidation}, time.Time{},
			Decision{Verdict: Wait, Until: now.Add(policy.ValidationRecheck), Reason: ReasonAwaitingConsent}},
		{"paused in the store", &store.Subscription{State: store.SubscriptionActive, PausedUntil: now.Add(time.Minute)}, time.Time{},
			Decision{Verdict: Wait, Until: now.Add(time.Minute), Reason: ReasonPaused}},
		{"paused by this node, later than the store", &store.Subscription{State: store.SubscriptionActive, PausedUntil: now.Add(time.Second)}, now.Add(time.Minute),
			Decision{Verdict: Wait, Until: now.Add(time.Minute), Reason: ReasonPaused}},
		{"pause over", &store.Subscription{State: store.SubscriptionActive, PausedUntil: now.Add(-time.Second)}, now,
			Decision{Verdict: Send}},
		{"active", active, time.Time{}, Decision{Verdict: Send}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Gate(tt.sub, tt.pausedUntil, now)
			if got.Verdict != tt.want.Verdict || !got.Until.Equal(tt.want.Until) || got.Reason != tt.want.Reason {
				t.Errorf("Gate = %+v, want %+v", got, tt.want)
			}
		})
	}
}
