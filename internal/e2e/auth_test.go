package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/heraldhq/herald/clients/publisher"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/policy"
)

// clients are Herald's services over one connection with one key.
type clients struct {
	publish    heraldv1.PublishServiceClient
	subs       heraldv1.SubscriptionServiceClient
	deliveries heraldv1.DeliveryServiceClient
	keys       heraldv1.ApiKeyServiceClient
	events     heraldv1.EventServiceClient
}

// dial connects to n with key ("" for none).
func dial(t *testing.T, n *testNode, key string) clients {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if key != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(publisher.InsecureAPIKey(key)))
	}
	conn, err := grpc.NewClient(n.GRPCAddr(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return clients{
		publish:    heraldv1.NewPublishServiceClient(conn),
		subs:       heraldv1.NewSubscriptionServiceClient(conn),
		deliveries: heraldv1.NewDeliveryServiceClient(conn),
		keys:       heraldv1.NewApiKeyServiceClient(conn),
		events:     heraldv1.NewEventServiceClient(conn),
	}
}

// createKey makes a key as the admin and returns its secret.
func createKey(t *testing.T, n *testNode, tenant string, scopes ...policy.Scope) (id, secret string) {
	t.Helper()
	k := &heraldv1.ApiKey{DisplayName: fmt.Sprintf("%s %v", tenant, scopes), Tenant: tenant}
	for _, s := range scopes {
		k.Scopes = append(k.Scopes, string(s))
	}
	out, err := n.keys.CreateApiKey(ctx(t), &heraldv1.CreateApiKeyRequest{ApiKey: k})
	if err != nil {
		t.Fatal(err)
	}
	return out.GetId(), out.GetSecret()
}

// authNode starts a node that requires API keys.
func authNode(t *testing.T) *testNode {
	t.Helper()
	cfg := nodeConfig(t, tempStore(t))
	cfg.AdminKey = auth.NewKey()
	return startNode(t, cfg)
}

// TestAuth_EveryMethodRefusesWhoMayNotCallIt runs every method of the
// scopes table as five callers: no key, an unknown key, a key of the right
// tenant without the method's scope, a key of another tenant with every
// scope, and a key of the right tenant with the scope.
func TestAuth_EveryMethodRefusesWhoMayNotCallIt(t *testing.T) {
	n := authNode(t)
	rcv := heraldtest.NewReceiver(t, nil)
	tenantOf := func(tenant string) func(*heraldv1.Subscription) {
		return func(s *heraldv1.Subscription) { s.Tenant = tenant }
	}
	sub := createSub(t, n, rcv.URL, tenantOf("acme"))
	victim := createSub(t, n, rcv.URL, tenantOf("acme"))    // deleted by the right caller
	validated := createSub(t, n, rcv.URL, tenantOf("acme")) // sent through the handshake again
	res := publish(t, n, newEvent("auth-1"))
	dlv := res[0].GetDeliveryIds()[0]
	victimKey, _ := createKey(t, n, "acme", policy.ScopePublish)
	_, acmePublisher := createKey(t, n, "acme", policy.ScopePublish)
	acmeEvent := newEvent("acme-erase")
	acmeEvent.Attributes["subject"] = str("acme-customer")
	if _, err := dial(t, n, acmePublisher).publish.Publish(ctx(t), &heraldv1.PublishRequest{Events: []*cloudeventsv1.CloudEvent{acmeEvent}}); err != nil {
		t.Fatal(err)
	}

	// Keys: per scope, acme's with it and acme's with every other scope;
	// globex's with every scope.
	with, without := map[policy.Scope]string{}, map[policy.Scope]string{}
	for _, s := range policy.Scopes[:len(policy.Scopes)-1] { // all but admin
		_, with[s] = createKey(t, n, "acme", s)
		var others []policy.Scope
		for _, o := range policy.Scopes[:len(policy.Scopes)-1] {
			if o != s {
				others = append(others, o)
			}
		}
		_, without[s] = createKey(t, n, "acme", others...)
	}
	_, globex := createKey(t, n, "globex", policy.ScopeAdmin)

	replayOp, err := n.deliveries.Replay(ctx(t), &heraldv1.ReplayRequest{SubscriptionId: sub.GetId(), StartTime: timestamppb.New(time.Now().Add(-time.Minute))})
	if err != nil {
		t.Fatal(err)
	}
	adminReplay := replayOp.GetId()
	type call func(context.Context, clients) (any, error)
	eraseCall := func(ctx context.Context, c clients) (any, error) {
		return c.events.EraseEvent(ctx, &heraldv1.EraseEventRequest{Source: "/orders", Id: "acme-erase"})
	}
	calls := map[string]call{
		"/herald.v1.PublishService/Publish": func(ctx context.Context, c clients) (any, error) {
			return c.publish.Publish(ctx, &heraldv1.PublishRequest{Events: []*cloudeventsv1.CloudEvent{newEvent(fmt.Sprint("auth-p-", time.Now().UnixNano()))}})
		},
		"/herald.v1.SubscriptionService/CreateSubscription": func(ctx context.Context, c clients) (any, error) {
			return c.subs.CreateSubscription(ctx, &heraldv1.CreateSubscriptionRequest{Subscription: &heraldv1.Subscription{
				Tenant: "acme", Sink: rcv.URL, Protocol: "HTTP", SkipValidation: true}})
		},
		"/herald.v1.SubscriptionService/GetSubscription": func(ctx context.Context, c clients) (any, error) {
			return c.subs.GetSubscription(ctx, &heraldv1.GetSubscriptionRequest{Id: sub.GetId()})
		},
		"/herald.v1.SubscriptionService/ListSubscriptions": func(ctx context.Context, c clients) (any, error) {
			return c.subs.ListSubscriptions(ctx, &heraldv1.ListSubscriptionsRequest{})
		},
		"/herald.v1.SubscriptionService/UpdateSubscription": func(ctx context.Context, c clients) (any, error) {
			return c.subs.UpdateSubscription(ctx, &heraldv1.UpdateSubscriptionRequest{
				Subscription: &heraldv1.Subscription{Id: sub.GetId(), Types: []string{"com.example.order.created"}},
				UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"types"}}})
		},
		"/herald.v1.SubscriptionService/DeleteSubscription": func(ctx context.Context, c clients) (any, error) {
			return c.subs.DeleteSubscription(ctx, &heraldv1.DeleteSubscriptionRequest{Id: victim.GetId()})
		},
		"/herald.v1.SubscriptionService/RotateSecret": func(ctx context.Context, c clients) (any, error) {
			return c.subs.RotateSecret(ctx, &heraldv1.RotateSecretRequest{Id: sub.GetId()})
		},
		"/herald.v1.SubscriptionService/GetSubscriptionHealth": func(ctx context.Context, c clients) (any, error) {
			return c.subs.GetSubscriptionHealth(ctx, &heraldv1.GetSubscriptionHealthRequest{Id: sub.GetId()})
		},
		"/herald.v1.SubscriptionService/ValidateSubscription": func(ctx context.Context, c clients) (any, error) {
			return c.subs.ValidateSubscription(ctx, &heraldv1.ValidateSubscriptionRequest{Id: validated.GetId()})
		},
		"/herald.v1.DeliveryService/GetDelivery": func(ctx context.Context, c clients) (any, error) {
			return c.deliveries.GetDelivery(ctx, &heraldv1.GetDeliveryRequest{Id: dlv})
		},
		"/herald.v1.DeliveryService/ListDeliveries": func(ctx context.Context, c clients) (any, error) {
			return c.deliveries.ListDeliveries(ctx, &heraldv1.ListDeliveriesRequest{})
		},
		"/herald.v1.DeliveryService/ListAttempts": func(ctx context.Context, c clients) (any, error) {
			return c.deliveries.ListAttempts(ctx, &heraldv1.ListAttemptsRequest{DeliveryId: dlv})
		},
		"/herald.v1.DeliveryService/RedriveDelivery": func(ctx context.Context, c clients) (any, error) {
			return c.deliveries.RedriveDelivery(ctx, &heraldv1.RedriveDeliveryRequest{Id: dlv})
		},
		"/herald.v1.DeliveryService/Replay": func(ctx context.Context, c clients) (any, error) {
			return c.deliveries.Replay(ctx, &heraldv1.ReplayRequest{SubscriptionId: sub.GetId(), StartTime: timestamppb.New(time.Now().Add(-time.Minute))})
		},
		"/herald.v1.DeliveryService/GetReplay": func(ctx context.Context, c clients) (any, error) {
			return c.deliveries.GetReplay(ctx, &heraldv1.GetReplayRequest{Id: adminReplay})
		},
		"/herald.v1.DeliveryService/ResendDelivery": func(ctx context.Context, c clients) (any, error) {
			return c.deliveries.ResendDelivery(ctx, &heraldv1.ResendDeliveryRequest{Id: dlv})
		},
		"/herald.v1.DeliveryService/RedriveDeadLetters": func(ctx context.Context, c clients) (any, error) {
			return c.deliveries.RedriveDeadLetters(ctx, &heraldv1.RedriveDeadLettersRequest{SubscriptionId: sub.GetId()})
		},
		"/herald.v1.EventService/EraseEvent": eraseCall,
		"/herald.v1.EventService/EraseSubject": func(ctx context.Context, c clients) (any, error) {
			return c.events.EraseSubject(ctx, &heraldv1.EraseSubjectRequest{Subject: "acme-customer"})
		},
		"/herald.v1.EventService/ListEvents": func(ctx context.Context, c clients) (any, error) {
			return c.events.ListEvents(ctx, &heraldv1.ListEventsRequest{SubscriptionId: sub.GetId()})
		},
		"/herald.v1.EventService/GetEvent": func(ctx context.Context, c clients) (any, error) {
			return c.events.GetEvent(ctx, &heraldv1.GetEventRequest{Source: "/orders", Id: "acme-erase"})
		},
		"/herald.v1.ApiKeyService/CreateApiKey": func(ctx context.Context, c clients) (any, error) {
			return c.keys.CreateApiKey(ctx, &heraldv1.CreateApiKeyRequest{ApiKey: &heraldv1.ApiKey{Tenant: "acme", Scopes: []string{"keys.admin"}}})
		},
		"/herald.v1.ApiKeyService/ListApiKeys": func(ctx context.Context, c clients) (any, error) {
			return c.keys.ListApiKeys(ctx, &heraldv1.ListApiKeysRequest{})
		},
		"/herald.v1.ApiKeyService/DeleteApiKey": func(ctx context.Context, c clients) (any, error) {
			return c.keys.DeleteApiKey(ctx, &heraldv1.DeleteApiKeyRequest{Id: victimKey})
		},
	}
	// What another tenant's key gets: NotFound for what names acme's
	// records, PermissionDenied for asking to act in acme, and lists
	// without acme's records.
	otherTenant := map[string]codes.Code{
		"/herald.v1.SubscriptionService/CreateSubscription": codes.PermissionDenied,
		"/herald.v1.ApiKeyService/CreateApiKey":             codes.PermissionDenied,
	}
	for m := range calls {
		if _, ok := otherTenant[m]; !ok {
			otherTenant[m] = codes.NotFound
		}
	}
	for _, m := range []string{"/herald.v1.PublishService/Publish", "/herald.v1.SubscriptionService/ListSubscriptions",
		"/herald.v1.DeliveryService/ListDeliveries", "/herald.v1.ApiKeyService/ListApiKeys", "/herald.v1.EventService/EraseSubject"} {
		otherTenant[m] = codes.OK
	}

	for method, scope := range policy.MethodScopes {
		if scope == policy.Open {
			continue
		}
		call, ok := calls[method]
		if !ok {
			t.Errorf("%s is in the scopes table but not in this test", method)
			continue
		}
		t.Run(method, func(t *testing.T) {
			code := func(key string) (any, codes.Code) {
				out, err := call(ctx(t), dial(t, n, key))
				return out, status.Code(err)
			}
			if _, c := code(""); c != codes.Unauthenticated {
				t.Errorf("no key: %s, want Unauthenticated", c)
			}
			if _, c := code(auth.NewKey()); c != codes.Unauthenticated {
				t.Errorf("unknown key: %s, want Unauthenticated", c)
			}
			if _, c := code(without[scope]); c != codes.PermissionDenied {
				t.Errorf("key without %s: %s, want PermissionDenied", scope, c)
			}
			out, c := code(globex)
			if c != otherTenant[method] {
				t.Errorf("another tenant's key: %s, want %s", c, otherTenant[method])
			}
			switch r := out.(type) {
			case *heraldv1.PublishResponse:
				if ids := r.GetResults()[0].GetDeliveryIds(); len(ids) != 0 {
					t.Errorf("another tenant's event matched acme's subscriptions: %v", ids)
				}
			case *heraldv1.ListSubscriptionsResponse:
				for _, s := range r.GetSubscriptions() {
					t.Errorf("another tenant listed %s of %s", s.GetId(), s.GetTenant())
				}
			case *heraldv1.ListDeliveriesResponse:
				for _, d := range r.GetDeliveries() {
					t.Errorf("another tenant listed delivery %s", d.GetId())
				}
			case *heraldv1.ListApiKeysResponse:
				for _, k := range r.GetApiKeys() {
					if k.GetTenant() != "globex" {
						t.Errorf("another tenant listed key %s of %q", k.GetId(), k.GetTenant())
					}
				}
			case *heraldv1.EraseSubjectResponse:
				if r.GetErased()+r.GetInProgress() != 0 {
					t.Errorf("another tenant's erasure reached acme's events: %v", r)
				}
			}
			out, c = code(with[scope])
			switch c {
			case codes.Unauthenticated, codes.PermissionDenied, codes.NotFound, codes.Unimplemented, codes.Internal:
				t.Errorf("the right key: %s, want the call to run", c)
			}
			switch r := out.(type) {
			case *heraldv1.ListSubscriptionsResponse:
				if !slices.ContainsFunc(r.GetSubscriptions(), func(s *heraldv1.Subscription) bool { return s.GetId() == sub.GetId() }) {
					t.Errorf("acme's key does not list acme's subscription")
				}
			case *heraldv1.ListDeliveriesResponse:
				if !slices.ContainsFunc(r.GetDeliveries(), func(d *heraldv1.Delivery) bool { return d.GetId() == dlv }) {
					t.Errorf("acme's key does not list acme's delivery")
				}
			case *heraldv1.Subscription:
				if r.GetTenant() != "acme" {
					t.Errorf("tenant %q, want acme", r.GetTenant())
				}
			}
		})
	}
}

func TestAuth_ATenantsEventsReachOnlyItsSubscriptions(t *testing.T) {
	n := authNode(t)
	acmeRcv, globexRcv := heraldtest.NewReceiver(t, nil), heraldtest.NewReceiver(t, nil)
	createSub(t, n, acmeRcv.URL, func(s *heraldv1.Subscription) { s.Tenant = "acme" })
	createSub(t, n, globexRcv.URL, func(s *heraldv1.Subscription) { s.Tenant = "globex" })
	_, acme := createKey(t, n, "acme", policy.ScopePublish)
	_, globex := createKey(t, n, "globex", policy.ScopePublish)

	// The same source and id from two tenants are two events.
	for _, key := range []string{acme, globex} {
		resp, err := dial(t, n, key).publish.Publish(ctx(t), &heraldv1.PublishRequest{Events: []*cloudeventsv1.CloudEvent{newEvent("same")}})
		if err != nil {
			t.Fatal(err)
		}
		if r := resp.GetResults()[0]; r.GetStatus() != heraldv1.PublishStatus_PUBLISH_STATUS_ACCEPTED || len(r.GetDeliveryIds()) != 1 {
			t.Errorf("publish as %s: %v, want accepted with one delivery", key[:7], r)
		}
	}
	// An unbound key's event reaches both.
	if r := publish(t, n, newEvent("everyone"))[0]; len(r.GetDeliveryIds()) != 2 {
		t.Errorf("the admin's event made %d deliveries, want 2", len(r.GetDeliveryIds()))
	}
	acmeRcv.WaitFor(t, 2, wait)
	globexRcv.WaitFor(t, 2, wait)
}

func TestAuth_KeysAreRevokedOnEveryNodeAndExpire(t *testing.T) {
	path := tempStore(t)
	cfg := nodeConfig(t, path)
	cfg.AdminKey = auth.NewKey()
	n1 := startNode(t, cfg)
	cfg2 := nodeConfig(t, path)
	cfg2.AdminKey = cfg.AdminKey
	n2 := startNode(t, cfg2)

	id, key := createKey(t, n1, "", policy.ScopeSubscriptionsRead)
	list := func(n *testNode) codes.Code {
		_, err := dial(t, n, key).subs.ListSubscriptions(ctx(t), &heraldv1.ListSubscriptionsRequest{})
		return status.Code(err)
	}
	heraldtest.Eventually(t, wait, "the key made on node 1 works on node 2", func() bool { return list(n2) == codes.OK })
	if _, err := n1.keys.DeleteApiKey(ctx(t), &heraldv1.DeleteApiKeyRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	if c := list(n1); c != codes.Unauthenticated {
		t.Errorf("revoked key on the node that revoked it: %s", c)
	}
	heraldtest.Eventually(t, wait, "the key revoked on node 1 is refused on node 2", func() bool { return list(n2) == codes.Unauthenticated })

	// An expiring key works until its time.
	k := &heraldv1.ApiKey{Scopes: []string{"subscriptions.read"}, ExpireTime: timestamppb.New(time.Now().Add(2 * time.Second))}
	out, err := n1.keys.CreateApiKey(ctx(t), &heraldv1.CreateApiKeyRequest{ApiKey: k})
	if err != nil {
		t.Fatal(err)
	}
	key = out.GetSecret()
	if c := list(n1); c != codes.OK {
		t.Errorf("an unexpired key: %s", c)
	}
	heraldtest.Eventually(t, wait, "the key is refused once expired", func() bool { return list(n1) == codes.Unauthenticated })

	// A key is shown once: List has no secrets.
	keys, err := n1.keys.ListApiKeys(ctx(t), &heraldv1.ListApiKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys.GetApiKeys() {
		if k.GetSecret() != "" || len(k.GetSecretHint()) > 7 {
			t.Errorf("ListApiKeys shows %q / %q", k.GetSecret(), k.GetSecretHint())
		}
	}
}

func TestAuth_KeysGrantNoMoreThanTheirMaker(t *testing.T) {
	n := authNode(t)
	_, acmeAdmin := createKey(t, n, "acme", policy.ScopeKeysAdmin, policy.ScopePublish)
	c := dial(t, n, acmeAdmin)
	for name, k := range map[string]*heraldv1.ApiKey{
		"a scope it lacks":  {Scopes: []string{"subscriptions.write"}},
		"admin":             {Scopes: []string{"admin"}},
		"another tenant":    {Scopes: []string{"publish"}, Tenant: "globex"},
		"an unknown scope":  {Scopes: []string{"everything"}},
		"no scope":          {},
		"an expired expiry": {Scopes: []string{"publish"}, ExpireTime: timestamppb.New(time.Now().Add(-time.Minute))},
	} {
		_, err := c.keys.CreateApiKey(ctx(t), &heraldv1.CreateApiKeyRequest{ApiKey: k})
		if c := status.Code(err); c != codes.PermissionDenied && c != codes.InvalidArgument {
			t.Errorf("%s: %v, want PermissionDenied or InvalidArgument", name, err)
		}
	}
	out, err := c.keys.CreateApiKey(ctx(t), &heraldv1.CreateApiKeyRequest{ApiKey: &heraldv1.ApiKey{Scopes: []string{"publish"}}})
	if err != nil || out.GetTenant() != "acme" {
		t.Errorf("a publish key made by acme's key: %v, %v; want it bound to acme", out, err)
	}
}

func TestAuth_PublishOverTheKeysRateIsRefusedWithRetryInfoAndStoresNothing(t *testing.T) {
	n := authNode(t)
	rcv := heraldtest.NewReceiver(t, nil)
	createSub(t, n, rcv.URL)
	out, err := n.keys.CreateApiKey(ctx(t), &heraldv1.CreateApiKeyRequest{ApiKey: &heraldv1.ApiKey{
		Scopes: []string{"publish"}, PublishRate: 0.01, PublishBurst: 3}})
	if err != nil {
		t.Fatal(err)
	}
	var events []*cloudeventsv1.CloudEvent
	for i := range 3 {
		events = append(events, newEvent(fmt.Sprint("rate-", i)))
	}
	c := dial(t, n, out.GetSecret())
	if _, err := c.publish.Publish(ctx(t), &heraldv1.PublishRequest{Events: events[:2]}); err != nil {
		t.Fatal(err)
	}
	_, err = c.publish.Publish(ctx(t), &heraldv1.PublishRequest{Events: []*cloudeventsv1.CloudEvent{newEvent("rate-2"), newEvent("rate-3")}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("over the rate: %v, want ResourceExhausted", err)
	}
	if d, ok := publisher.RetryDelay(err); !ok || d <= 0 {
		t.Errorf("RetryDelay = %v, %v; want a positive delay", d, ok)
	}
	ds, err := n.deliveries.ListDeliveries(ctx(t), &heraldv1.ListDeliveriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.GetDeliveries()) != 2 {
		t.Errorf("%d deliveries stored, want the 2 within the rate", len(ds.GetDeliveries()))
	}
}

func TestAuth_MetricsNeedTheAdminScope(t *testing.T) {
	n := authNode(t)
	_, publishKey := createKey(t, n, "", policy.ScopePublish)
	for key, want := range map[string]int{"": 401, publishKey: 403, n.cfg.AdminKey: 200} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+n.HTTPAddr()+"/metrics", nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("/metrics with %q: %d, want %d", key, resp.StatusCode, want)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + n.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s without a key: %d, want 200", path, resp.StatusCode)
		}
	}
}
