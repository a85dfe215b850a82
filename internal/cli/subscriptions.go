package cli

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

func init() {
	nouns["subscriptions"] = map[string]command{
		"list":   {"[--tenant T] [--label k=v]... [--watch 5s]: list subscriptions", subscriptionsList},
		"get":    {"ID: show one subscription", subscriptionsGet},
		"create": {"--sink URL [--type T]... [--source S] [--tenant T] [--skip-validation] [--suspend-after 72h] | -f subscription.json: create a subscription", subscriptionsCreate},
		"update": {"ID [--sink URL] [--type T]... [--source S] [--name N] [--description D] [--label k=v]... [--rate-limit N] [--max-concurrency N] [--suspend-after 72h] [--pause-only=true|false]: change only the fields given", subscriptionsUpdate},
		"delete": {"ID: delete a subscription", subscriptionsDelete},
		"enable": {"ID: enable a disabled or suspended subscription; what was held for it is delivered, in publish order", func(c *call) error {
			return subscriptionsSetState(c, heraldv1.SubscriptionState_SUBSCRIPTION_STATE_ACTIVE)
		}},
		"disable": {"ID: disable a subscription (nothing is sent to it; matching events are held until it is enabled)", func(c *call) error {
			return subscriptionsSetState(c, heraldv1.SubscriptionState_SUBSCRIPTION_STATE_DISABLED)
		}},
		"validate":      {"ID: run the webhook validation handshake again", subscriptionsValidate},
		"rotate-secret": {"ID [--overlap 24h]: make a new signing secret; the old one signs too until the overlap ends", subscriptionsRotate},
	}
}

func subscriptionRows(subs []*heraldv1.Subscription) [][]string {
	now := time.Now()
	rows := [][]string{{"ID", "NAME", "TENANT", "STATE", "SINK", "TYPES", "CREATED", "REASON"}}
	for _, s := range subs {
		rows = append(rows, []string{
			s.GetId(), cut(orDash(s.GetDisplayName()), 24), s.GetTenant(), enumName(s.GetState().String(), "SUBSCRIPTION_STATE_"),
			cut(s.GetSink(), 48), cut(orDash(strings.Join(s.GetTypes(), ",")), 40), ago(s.GetCreateTime(), now),
			cut(orDash(s.GetStateReason()), 60),
		})
	}
	return rows
}

func subscriptionsList(c *call) error {
	tenant := c.flags.String("tenant", "", "only this tenant's subscriptions")
	labels := labelsFlag{}
	c.flags.Var(labels, "label", "only subscriptions with this label, key=value (repeat for several)")
	c.watchFlag()
	if _, err := c.parse(0, 0); err != nil {
		return err
	}
	return c.repeat(func() error {
		subs, err := c.listSubscriptions(*tenant, labels)
		if err != nil {
			return err
		}
		all := &heraldv1.ListSubscriptionsResponse{Subscriptions: subs}
		return c.print(all, subscriptionRows(subs))
	})
}

// listSubscriptions lists every subscription of tenant ("": all the
// caller may see) with labels, page by page.
func (c *call) listSubscriptions(tenant string, labels map[string]string) ([]*heraldv1.Subscription, error) {
	svc, err := c.subs()
	if err != nil {
		return nil, err
	}
	var subs []*heraldv1.Subscription
	req := &heraldv1.ListSubscriptionsRequest{Tenant: tenant, Labels: labels, PageSize: 1000}
	for {
		resp, err := svc.ListSubscriptions(c.ctx, req)
		if err != nil {
			return nil, err
		}
		subs = append(subs, resp.GetSubscriptions()...)
		if resp.GetNextPageToken() == "" {
			return subs, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// subscriptionDetail prints one subscription's fields as a table of
// names and values.
func (c *call) subscriptionDetail(s *heraldv1.Subscription) error {
	rows := [][]string{
		{"ID", s.GetId()},
		{"NAME", orDash(s.GetDisplayName())},
		{"TENANT", s.GetTenant()},
		{"STATE", enumName(s.GetState().String(), "SUBSCRIPTION_STATE_")},
		{"REASON", orDash(s.GetStateReason())},
		{"FAILING SINCE", orDash(timeText(s.GetFailingSince()))},
		{"SUSPEND AFTER", orDash(durationText(s.GetSuspendAfter()))},
		{"SINK", s.GetSink()},
		{"SOURCE", orDash(s.GetSource())},
		{"TYPES", orDash(strings.Join(s.GetTypes(), ", "))},
		{"CONTENT MODE", enumName(s.GetContentMode().String(), "CONTENT_MODE_")},
		{"SIGNING", enumName(s.GetSigningAlgorithm().String(), "SIGNING_ALGORITHM_")},
		{"RATE LIMIT", perMinute(s.GetRateLimit()) + " (granted by the sink: " + perMinute(s.GetAllowedRate()) + "; in force for its origin: " + perMinute(s.GetOriginAllowedRate()) + ")"},
		{"CREATED", s.GetCreateTime().AsTime().Format(time.RFC3339)},
	}
	if s.GetSigningSecret() != "" {
		rows = append(rows, []string{"SIGNING SECRET", s.GetSigningSecret() + "   (shown only now)"})
	} else if s.GetSigningPublicKey() != "" {
		rows = append(rows, []string{"PUBLIC KEY", s.GetSigningPublicKey()})
	} else {
		rows = append(rows, []string{"SECRET HINT", orDash(s.GetSigningSecretHint())})
	}
	if s.GetGeneratedBearerToken() != "" {
		rows = append(rows, []string{"BEARER TOKEN", s.GetGeneratedBearerToken() + "   (shown only now)"})
	}
	return c.print(s, rows)
}

func subscriptionsGet(c *call) error {
	return c.onSubscription(func(svc heraldv1.SubscriptionServiceClient, id string) (*heraldv1.Subscription, error) {
		return svc.GetSubscription(c.ctx, &heraldv1.GetSubscriptionRequest{Id: id})
	})
}

// onSubscription runs a command that takes a subscription ID and prints
// the subscription the call returns.
func (c *call) onSubscription(do func(heraldv1.SubscriptionServiceClient, string) (*heraldv1.Subscription, error)) error {
	args, err := c.parse(1, 1)
	if err != nil {
		return err
	}
	svc, err := c.subs()
	if err != nil {
		return err
	}
	s, err := do(svc, args[0])
	if err != nil {
		return err
	}
	return c.subscriptionDetail(s)
}

// labelsFlag is a repeated key=value flag.
type labelsFlag map[string]string

func (l labelsFlag) String() string { return fmt.Sprint(map[string]string(l)) }
func (l labelsFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	l[k] = val
	return nil
}

// stringsFlag is a flag that may be repeated.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func subscriptionsCreate(c *call) error {
	var types stringsFlag
	c.flags.Var(&types, "type", "an event type to match (repeat for several)")
	sink := c.flags.String("sink", "", "the URL deliveries are POSTed to")
	source := c.flags.String("source", "", "only events of this source")
	tenant := c.flags.String("tenant", "", "the subscription's tenant (default: the key's, or default)")
	skip := c.flags.Bool("skip-validation", false, "skip the webhook validation handshake")
	name := c.flags.String("name", "", "a name for people")
	labels := labelsFlag{}
	c.flags.Var(labels, "label", "a label, key=value (repeat for several)")
	file := c.flags.String("f", "", "a Subscription in the API's JSON (\"-\": standard input); flags override its fields")
	suspendAfter := c.flags.Duration("suspend-after", 0, "suspend the subscription after its sink failed every attempt this long (default: the server's --suspend-after)")
	if _, err := c.parse(0, 0); err != nil {
		return err
	}
	sub := &heraldv1.Subscription{Protocol: "HTTP"}
	if *file != "" {
		b, err := readInput(c, *file)
		if err != nil {
			return err
		}
		if err := protojson.Unmarshal(b, sub); err != nil {
			return usageError(fmt.Sprintf("-f %s: %v", *file, err))
		}
		if sub.Protocol == "" {
			sub.Protocol = "HTTP"
		}
	}
	if *sink != "" {
		sub.Sink = *sink
	}
	if len(types) > 0 {
		sub.Types = types
	}
	if *source != "" {
		sub.Source = *source
	}
	if *tenant != "" {
		sub.Tenant = *tenant
	}
	if *skip {
		sub.SkipValidation = true
	}
	if *name != "" {
		sub.DisplayName = *name
	}
	if len(labels) > 0 {
		sub.Labels = labels
	}
	if *suspendAfter != 0 {
		sub.SuspendAfter = durationpb.New(*suspendAfter)
	}
	if sub.Sink == "" {
		return usageError("--sink (or a sink in -f) is required")
	}
	svc, err := c.subs()
	if err != nil {
		return err
	}
	out, err := svc.CreateSubscription(c.ctx, &heraldv1.CreateSubscriptionRequest{Subscription: sub})
	if err != nil {
		return err
	}
	return c.subscriptionDetail(out)
}

// subscriptionsUpdate changes the fields whose flags are given, and only
// those (the update mask is the flags set): `--label` replaces the labels,
// `--type` the types.
func subscriptionsUpdate(c *call) error {
	sub := &heraldv1.Subscription{}
	var types stringsFlag
	labels := labelsFlag{}
	// Each flag names the field it sets, by the API's field name.
	fields := map[string]string{}
	field := func(flagName, path string) string { fields[flagName] = path; return flagName }
	c.flags.StringVar(&sub.Sink, field("sink", "sink"), "", "the URL deliveries are POSTed to (validated again unless --skip-validation was set)")
	c.flags.Var(&types, field("type", "types"), "an event type to match (repeat for several; replaces the types)")
	c.flags.StringVar(&sub.Source, field("source", "source"), "", "only events of this source")
	c.flags.StringVar(&sub.DisplayName, field("name", "display_name"), "", "a name for people")
	c.flags.StringVar(&sub.Description, field("description", "description"), "", "what the subscription is for")
	c.flags.Var(labels, field("label", "labels"), "a label, key=value (repeat for several; replaces the labels)")
	rate := c.flags.Int(field("rate-limit", "rate_limit"), 0, "requests per minute at most, for the whole cluster (0: none)")
	conc := c.flags.Int(field("max-concurrency", "max_concurrency"), 0, "requests in flight at most, for the whole cluster (0: none)")
	suspendAfter := c.flags.Duration(field("suspend-after", "suspend_after"), 0, "suspend after the sink failed every attempt this long (0: the server's --suspend-after)")
	c.flags.BoolVar(&sub.SubscriptionPauseOnly, field("pause-only", "subscription_pause_only"), false, "a Retry-After pauses only this subscription, not every one on the sink's origin")
	args, err := c.parse(1, 1)
	if err != nil {
		return err
	}
	var paths []string
	c.flags.Visit(func(f *flag.Flag) {
		if p, ok := fields[f.Name]; ok {
			paths = append(paths, p)
		}
	})
	if len(paths) == 0 {
		return usageError("nothing to change: give at least one field's flag")
	}
	sub.Id, sub.Types, sub.Labels = args[0], types, labels
	sub.RateLimit, sub.MaxConcurrency = int32(*rate), int32(*conc)
	if *suspendAfter != 0 {
		sub.SuspendAfter = durationpb.New(*suspendAfter)
	}
	svc, err := c.subs()
	if err != nil {
		return err
	}
	out, err := svc.UpdateSubscription(c.ctx, &heraldv1.UpdateSubscriptionRequest{
		Subscription: sub,
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: paths},
	})
	if err != nil {
		return err
	}
	return c.subscriptionDetail(out)
}

func subscriptionsDelete(c *call) error {
	args, err := c.parse(1, 1)
	if err != nil {
		return err
	}
	svc, err := c.subs()
	if err != nil {
		return err
	}
	if _, err := svc.DeleteSubscription(c.ctx, &heraldv1.DeleteSubscriptionRequest{Id: args[0]}); err != nil {
		return err
	}
	fmt.Fprintf(c.io.Err, "deleted %s\n", args[0])
	return nil
}

func subscriptionsSetState(c *call, st heraldv1.SubscriptionState) error {
	args, err := c.parse(1, 1)
	if err != nil {
		return err
	}
	svc, err := c.subs()
	if err != nil {
		return err
	}
	out, err := svc.UpdateSubscription(c.ctx, &heraldv1.UpdateSubscriptionRequest{
		Subscription: &heraldv1.Subscription{Id: args[0], State: st},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"state"}},
	})
	if err != nil {
		return err
	}
	return c.subscriptionDetail(out)
}

func subscriptionsValidate(c *call) error {
	return c.onSubscription(func(svc heraldv1.SubscriptionServiceClient, id string) (*heraldv1.Subscription, error) {
		return svc.ValidateSubscription(c.ctx, &heraldv1.ValidateSubscriptionRequest{Id: id})
	})
}

func subscriptionsRotate(c *call) error {
	overlap := c.flags.Duration("overlap", 24*time.Hour, "how long the previous secret keeps signing")
	args, err := c.parse(1, 1)
	if err != nil {
		return err
	}
	svc, err := c.subs()
	if err != nil {
		return err
	}
	out, err := svc.RotateSecret(c.ctx, &heraldv1.RotateSecretRequest{Id: args[0], Overlap: durationpb.New(*overlap)})
	if err != nil {
		return err
	}
	secret := out.GetSigningSecret()
	if secret == "" {
		secret = out.GetSigningPublicKey() + " (public key)"
	}
	return c.print(out, [][]string{
		{"NEW SECRET", secret + "   (shown only now)"},
		{"PREVIOUS SIGNS UNTIL", out.GetPreviousExpireTime().AsTime().Format(time.RFC3339)},
	})
}

// perMinute is a rate in requests per minute, or "none" for 0.
func perMinute(n int32) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprintf("%d/min", n)
}

// timeText is t in RFC 3339, or "" when unset.
func timeText(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return t.AsTime().Format(time.RFC3339)
}

// durationText is d, or "" when unset.
func durationText(d *durationpb.Duration) string {
	if d == nil {
		return ""
	}
	return d.AsDuration().String()
}
