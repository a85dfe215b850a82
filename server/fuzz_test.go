package server

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/catalog"
	"github.com/heraldhq/herald/internal/publish"
	"github.com/heraldhq/herald/internal/store/sqlite"
	"github.com/heraldhq/herald/workflows"
)

// noWorkflows starts nothing.
type noWorkflows struct{}

func (noWorkflows) Redrive(context.Context, workflows.DeliveryInput) error         { return nil }
func (noWorkflows) StartHandshake(context.Context, workflows.HandshakeInput) error { return nil }
func (noWorkflows) Grant(context.Context, string, workflows.GrantInput) error      { return nil }
func (noWorkflows) Status(context.Context, string, string) (workflows.DeliveryStatus, error) {
	return workflows.DeliveryStatus{}, nil
}

// fuzzCalls are the services' methods, each decoding its request from
// bytes. Handlers are called directly, without the recovering
// interceptor, so that a panic fails the fuzz test.
var fuzzCalls = []func(ctx context.Context, s *Services, b []byte) error{
	func(ctx context.Context, s *Services, b []byte) error {
		r := &heraldv1.PublishRequest{}
		if proto.Unmarshal(b, r) != nil {
			return nil
		}
		_, err := s.Publish(ctx, r)
		return err
	},
	func(ctx context.Context, s *Services, b []byte) error {
		r := &heraldv1.CreateSubscriptionRequest{}
		if proto.Unmarshal(b, r) != nil {
			return nil
		}
		_, err := s.CreateSubscription(ctx, r)
		return err
	},
	func(ctx context.Context, s *Services, b []byte) error {
		r := &heraldv1.UpdateSubscriptionRequest{}
		if proto.Unmarshal(b, r) != nil {
			return nil
		}
		_, err := s.UpdateSubscription(ctx, r)
		return err
	},
	func(ctx context.Context, s *Services, b []byte) error {
		r := &heraldv1.ListDeliveriesRequest{}
		if proto.Unmarshal(b, r) != nil {
			return nil
		}
		_, err := s.ListDeliveries(ctx, r)
		return err
	},
	func(ctx context.Context, s *Services, b []byte) error {
		r := &heraldv1.RedriveDeadLettersRequest{}
		if proto.Unmarshal(b, r) != nil {
			return nil
		}
		_, err := s.RedriveDeadLetters(ctx, r)
		return err
	},
	func(ctx context.Context, s *Services, b []byte) error {
		r := &heraldv1.RotateSecretRequest{}
		if proto.Unmarshal(b, r) != nil {
			return nil
		}
		_, err := s.RotateSecret(ctx, r)
		return err
	},
	func(ctx context.Context, s *Services, b []byte) error {
		r := &heraldv1.CreateApiKeyRequest{}
		if proto.Unmarshal(b, r) != nil {
			return nil
		}
		_, err := s.CreateApiKey(ctx, r)
		return err
	},
	func(ctx context.Context, s *Services, b []byte) error {
		r := &heraldv1.ListSubscriptionsRequest{}
		if proto.Unmarshal(b, r) != nil {
			return nil
		}
		_, err := s.ListSubscriptions(ctx, r)
		return err
	},
}

func seed(f *testing.F, method byte, m proto.Message) {
	b, err := proto.Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(append([]byte{method}, b...))
}

// FuzzServices drives requests built from random bytes through the gRPC
// services' handlers on a real store: whatever the request, the handler
// answers (an error is fine) and never panics.
func FuzzServices(f *testing.F) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(f.TempDir(), "herald.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	cat := catalog.New(s, nil)
	if err := cat.Reload(ctx); err != nil {
		f.Fatal(err)
	}
	p := publish.New(s, cat, publish.Config{})
	f.Cleanup(p.Close)
	svc := NewServices(p, s, cat, noWorkflows{}, Options{AllowInsecureSinks: true, Keys: s})

	sub := &heraldv1.Subscription{Sink: "http://127.0.0.1:1/hook", Protocol: "HTTP", SkipValidation: true,
		Filters:     []*heraldv1.Filter{{Dialect: &heraldv1.Filter_Sql{Sql: "CONCAT_WS(subject, subject, subject) = 'x'"}}},
		RetryPolicy: &heraldv1.RetryPolicy{InitialInterval: durationpb.New(time.Second), BackoffCoefficient: 2}}
	seed(f, 0, &heraldv1.PublishRequest{Events: []*cloudeventsv1.CloudEvent{{Id: "1", Source: "/s", SpecVersion: "1.0", Type: "t"}}})
	seed(f, 1, &heraldv1.CreateSubscriptionRequest{Subscription: sub})
	seed(f, 2, &heraldv1.UpdateSubscriptionRequest{Subscription: sub})
	seed(f, 3, &heraldv1.ListDeliveriesRequest{PageSize: 5, PageToken: "dlv_zzz", EventTypes: []string{"a", "b"}, EventId: "x", LastStatusClass: 5})
	seed(f, 4, &heraldv1.RedriveDeadLettersRequest{SubscriptionId: "sub_1", RatePerSecond: 2_000_000_000})
	seed(f, 5, &heraldv1.RotateSecretRequest{Id: "sub_1", Overlap: durationpb.New(-time.Hour)})
	seed(f, 6, &heraldv1.CreateApiKeyRequest{ApiKey: &heraldv1.ApiKey{Scopes: []string{"admin"}, PublishRate: 1e300}})
	seed(f, 7, &heraldv1.ListSubscriptionsRequest{PageSize: -1, Tenant: "../x"})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = fuzzCalls[int(b[0])%len(fuzzCalls)](ctx, svc, b[1:])
	})
}
