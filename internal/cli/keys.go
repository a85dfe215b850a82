package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/heraldhq/herald/clients/cehttp"
	"github.com/heraldhq/herald/clients/cevent"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/auth"
)

func init() {
	nouns["keys"] = map[string]command{
		"create": {"--scope S [--scope S]... [--tenant T] [--name N] [--expires 720h] [--publish-rate R]: make an API key (its secret is shown once)", keysCreate},
		"list":   {"[--tenant T]: list API keys (never their secrets)", keysList},
		"delete": {"ID: revoke an API key", keysDelete},
		"new":    {": print a new API key made here and stored nowhere (for --admin-key)", keysNew},
	}
	nouns["events"] = map[string]command{
		"list":  {"--subscription ID [--after CURSOR] [--type T]... [--limit N]: list the events a subscription matched, in publish order, with their delivery's state", eventsList},
		"get":   {"SOURCE ID [--tenant T]: show an event and its deliveries", eventsGet},
		"erase": {"SOURCE ID | --subject S [--tenant T]: remove the data of an event, or of every event about a subject, and their deliveries' attempts (erasure requests)", eventsErase},
	}
	nouns["publish"] = map[string]command{
		"": {"[--id ID --source S --type T [--data D] [--data-content-type CT] | -f events.json]: publish events (one CloudEvent or an array, in the JSON format; \"-\": standard input)", publish},
	}
}

func keyRows(keys []*heraldv1.ApiKey) [][]string {
	now := time.Now()
	rows := [][]string{{"ID", "NAME", "SCOPES", "TENANT", "HINT", "EXPIRES", "CREATED"}}
	for _, k := range keys {
		exp := "never"
		if k.GetExpireTime() != nil {
			exp = ago(k.GetExpireTime(), now)
		}
		rows = append(rows, []string{k.GetId(), cut(orDash(k.GetDisplayName()), 30), strings.Join(k.GetScopes(), ","),
			orDash(k.GetTenant()), k.GetSecretHint(), exp, ago(k.GetCreateTime(), now)})
	}
	return rows
}

func keysCreate(c *call) error {
	var scopes stringsFlag
	c.flags.Var(&scopes, "scope", "a scope the key holds (repeat for several)")
	tenant := c.flags.String("tenant", "", "bind the key to this tenant")
	name := c.flags.String("name", "", "a name for people")
	expires := c.flags.Duration("expires", 0, "the key stops working after this long (default: never)")
	rate := c.flags.Float64("publish-rate", 0, "events per second the key may publish per node (0: the node's default)")
	subject := c.flags.String("certificate-subject", "", "a client certificate common name that authenticates as this key")
	if _, err := c.parse(0, 0); err != nil {
		return err
	}
	k := &heraldv1.ApiKey{DisplayName: *name, Scopes: scopes, Tenant: *tenant, PublishRate: *rate, CertificateSubject: *subject}
	if *expires > 0 {
		k.ExpireTime = timestamppb.New(time.Now().Add(*expires))
	}
	cc, err := c.dial()
	if err != nil {
		return err
	}
	out, err := heraldv1.NewApiKeyServiceClient(cc).CreateApiKey(c.ctx, &heraldv1.CreateApiKeyRequest{ApiKey: k})
	if err != nil {
		return err
	}
	rows := keyRows([]*heraldv1.ApiKey{out})
	rows[0] = append(rows[0], "SECRET (shown only now)")
	rows[1] = append(rows[1], out.GetSecret())
	return c.print(out, rows)
}

func keysNew(c *call) error {
	if _, err := c.parse(0, 0); err != nil {
		return err
	}
	_, err := fmt.Fprintln(c.io.Out, auth.NewKey())
	return err
}

func keysList(c *call) error {
	tenant := c.flags.String("tenant", "", "only this tenant's keys")
	if _, err := c.parse(0, 0); err != nil {
		return err
	}
	cc, err := c.dial()
	if err != nil {
		return err
	}
	resp, err := heraldv1.NewApiKeyServiceClient(cc).ListApiKeys(c.ctx, &heraldv1.ListApiKeysRequest{Tenant: *tenant})
	if err != nil {
		return err
	}
	return c.print(resp, keyRows(resp.GetApiKeys()))
}

func keysDelete(c *call) error {
	args, err := c.parse(1, 1)
	if err != nil {
		return err
	}
	cc, err := c.dial()
	if err != nil {
		return err
	}
	if _, err := heraldv1.NewApiKeyServiceClient(cc).DeleteApiKey(c.ctx, &heraldv1.DeleteApiKeyRequest{Id: args[0]}); err != nil {
		return err
	}
	fmt.Fprintf(c.io.Err, "revoked %s\n", args[0])
	return nil
}

func eventsList(c *call) error {
	sub := c.flags.String("subscription", "", "the subscription (required)")
	after := c.flags.String("after", "", "list after this cursor (from a previous list's CURSOR column or next_cursor)")
	limit := c.flags.Int("limit", 100, "the most events listed")
	var types stringsFlag
	c.flags.Var(&types, "type", "only events of this type (repeat for several)")
	if _, err := c.parse(0, 0); err != nil {
		return err
	}
	if *sub == "" {
		return usageError("--subscription is required")
	}
	cc, err := c.dial()
	if err != nil {
		return err
	}
	resp, err := heraldv1.NewEventServiceClient(cc).ListEvents(c.ctx, &heraldv1.ListEventsRequest{
		SubscriptionId: *sub, AfterCursor: *after, Types: types, PageSize: int32(min(*limit, 1000))})
	if err != nil {
		return err
	}
	now := time.Now()
	rows := [][]string{{"SOURCE", "ID", "TYPE", "PUBLISHED", "DELIVERY", "STATE", "CURSOR"}}
	for _, e := range resp.GetEvents() {
		rows = append(rows, []string{e.GetEvent().GetSource(), e.GetEvent().GetId(), cut(e.GetEvent().GetType(), 32),
			ago(e.GetPublishTime(), now), e.GetDeliveryId(), enumName(e.GetDeliveryState().String(), "DELIVERY_STATE_"), e.GetCursor()})
	}
	return c.print(resp, rows)
}

func eventsGet(c *call) error {
	tenant := c.flags.String("tenant", "", "the publishing key's tenant (empty: a key bound to none)")
	args, err := c.parse(2, 2)
	if err != nil {
		return err
	}
	cc, err := c.dial()
	if err != nil {
		return err
	}
	resp, err := heraldv1.NewEventServiceClient(cc).GetEvent(c.ctx, &heraldv1.GetEventRequest{Source: args[0], Id: args[1], Tenant: *tenant})
	if err != nil {
		return err
	}
	return c.print(resp, deliveryRows(resp.GetDeliveries()))
}

func eventsErase(c *call) error {
	tenant := c.flags.String("tenant", "", "the publishing key's tenant (empty: a key bound to none)")
	subject := c.flags.String("subject", "", "erase every event whose subject is this one, instead of one event")
	args, err := c.parse(0, 2)
	if err != nil {
		return err
	}
	if (*subject == "") != (len(args) == 2) {
		c.flags.Usage()
		return usageError("give SOURCE and ID, or --subject alone")
	}
	cc, err := c.dial()
	if err != nil {
		return err
	}
	events := heraldv1.NewEventServiceClient(cc)
	if *subject != "" {
		r, err := events.EraseSubject(c.ctx, &heraldv1.EraseSubjectRequest{Subject: *subject, Tenant: *tenant})
		if err != nil {
			return err
		}
		fmt.Fprintf(c.io.Err, "erased the data of %d events about %q\n", r.GetErased(), *subject)
		if r.GetInProgress() > 0 {
			fmt.Fprintf(c.io.Err, "%d events about it are still being delivered: run this again once they are delivered or dead\n", r.GetInProgress())
			return errors.New("erasure incomplete")
		}
		return nil
	}
	if _, err := events.EraseEvent(c.ctx, &heraldv1.EraseEventRequest{Source: args[0], Id: args[1], Tenant: *tenant}); err != nil {
		return err
	}
	fmt.Fprintf(c.io.Err, "erased the data of %s %s\n", args[0], args[1])
	return nil
}

// readInput reads a file, or standard input for "-".
func readInput(c *call, name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(c.io.In)
	}
	return os.ReadFile(name)
}

func publish(c *call) error {
	file := c.flags.String("f", "", "CloudEvents in the JSON format: one event or an array (\"-\": standard input)")
	id := c.flags.String("id", "", "the event's id")
	source := c.flags.String("source", "", "the event's source")
	typ := c.flags.String("type", "", "the event's type")
	subject := c.flags.String("subject", "", "the event's subject")
	data := c.flags.String("data", "", "the event's data")
	ct := c.flags.String("data-content-type", "application/json", "the data's media type")
	if _, err := c.parse(0, 0); err != nil {
		return err
	}
	var events []cloudevents.Event
	switch {
	case *file != "":
		b, err := readInput(c, *file)
		if err != nil {
			return err
		}
		if events, err = decodeEvents(b); err != nil {
			return usageError(fmt.Sprintf("-f %s: %v", *file, err))
		}
	case *id != "" && *source != "" && *typ != "":
		e := cloudevents.NewEvent()
		e.SetID(*id)
		e.SetSource(*source)
		e.SetType(*typ)
		if *subject != "" {
			e.SetSubject(*subject)
		}
		if *data != "" {
			if err := e.SetData(*ct, []byte(*data)); err != nil {
				return usageError(err.Error())
			}
		}
		events = []cloudevents.Event{e}
	default:
		return usageError("give --id, --source and --type, or -f with events")
	}
	req := &heraldv1.PublishRequest{}
	for i, e := range events {
		pe, err := cevent.ToProto(e)
		if err != nil {
			return usageError(fmt.Sprintf("event %d: %v", i, err))
		}
		req.Events = append(req.Events, pe)
	}
	cc, err := c.dial()
	if err != nil {
		return err
	}
	resp, err := heraldv1.NewPublishServiceClient(cc).Publish(c.ctx, req)
	if err != nil {
		return err
	}
	rows := [][]string{{"SOURCE", "ID", "STATUS", "DELIVERIES"}}
	for _, r := range resp.GetResults() {
		rows = append(rows, []string{r.GetSource(), r.GetId(), enumName(r.GetStatus().String(), "PUBLISH_STATUS_"),
			orDash(strings.Join(r.GetDeliveryIds(), ",")) + " (" + strconv.Itoa(len(r.GetDeliveryIds())) + ")"})
	}
	return c.print(resp, rows)
}

// decodeEvents reads one CloudEvent or an array of them in the JSON
// format, with Herald's decoder (any member order and whitespace).
func decodeEvents(b []byte) ([]cloudevents.Event, error) {
	var raws []json.RawMessage
	if t := strings.TrimSpace(string(b)); strings.HasPrefix(t, "[") {
		if err := json.Unmarshal(b, &raws); err != nil {
			return nil, err
		}
	} else {
		raws = []json.RawMessage{b}
	}
	events := make([]cloudevents.Event, len(raws))
	for i, r := range raws {
		e, err := cehttp.UnmarshalJSON(r)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		events[i] = e
	}
	return events, nil
}
