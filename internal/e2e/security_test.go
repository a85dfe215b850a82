package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/clients/publisher"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/policy"
)

// secretsOf creates, on n, a subscription whose sink fails its first
// attempt (so a retry workflow runs) and one that goes through the
// validation handshake (so a handshake workflow runs), each with a header
// credential, and an API key; it returns every secret Herald was given or
// made, once their workflows have run, and the data of the event it
// published (which Temporal must never hold either).
func secretsOf(t *testing.T, n *testNode) (secrets []string, payload string) {
	t.Helper()
	const header = "header-credential-that-must-stay-sealed"
	rcv := heraldtest.NewReceiver(t, failFirst(1, http.StatusBadGateway, nil))
	withHeader := func(s *heraldv1.Subscription) {
		s.ProtocolSettings = &heraldv1.HttpSettings{Headers: map[string]string{"X-Api-Key": header}}
	}
	retried := createSub(t, n, rcv.URL, withHeader)
	hs := newHandshakeSink(t, func(h http.Header) (int, http.Header) {
		return http.StatusOK, http.Header{"WebHook-Allowed-Origin": {h.Get("WebHook-Request-Origin")}}
	})
	validated := createSub(t, n, hs.URL, withHeader, withHandshake, func(s *heraldv1.Subscription) {
		s.SigningAlgorithm = heraldv1.SigningAlgorithm_SIGNING_ALGORITHM_ED25519
		s.SinkCredential = &heraldv1.SinkCredential{BearerToken: "bearer-token-that-must-stay-sealed"}
	})
	waitSubscriptionState(t, n, validated.GetId(), heraldv1.SubscriptionState_SUBSCRIPTION_STATE_ACTIVE)
	rotated, err := n.subs.RotateSecret(ctx(t), &heraldv1.RotateSecretRequest{Id: retried.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	payload = "event-data-that-never-reaches-temporal"
	e := newEvent("secret-1")
	e.Data = &cloudeventsv1.CloudEvent_TextData{TextData: `{"note":"` + payload + `"}`}
	id := publish(t, n, e)[0].GetDeliveryIds()
	for _, d := range id {
		waitDeliveryState(t, n, d, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	}
	key, err := n.keys.CreateApiKey(ctx(t), &heraldv1.CreateApiKeyRequest{ApiKey: &heraldv1.ApiKey{Scopes: []string{"publish"}}})
	if err != nil {
		t.Fatal(err)
	}
	secrets = []string{
		retried.GetSigningSecret(), retried.GetGeneratedBearerToken(), rotated.GetSigningSecret(),
		header, "bearer-token-that-must-stay-sealed", key.GetSecret(), n.cfg.AdminKey,
	}
	for _, s := range secrets {
		if s == "" {
			t.Fatalf("a secret is empty: %q", secrets)
		}
	}
	// The key material after the whsec_ prefix too.
	return append(secrets, strings.TrimPrefix(retried.GetSigningSecret(), "whsec_")), payload
}

// TestSecrets_NeitherTheStoreNorTemporalHoldsThem reads SQLite's files and
// every Temporal history of the test's workflows byte by byte.
func TestSecrets_NeitherTheStoreNorTemporalHoldsThem(t *testing.T) {
	path := tempStore(t)
	cfg := nodeConfig(t, path)
	cfg.AdminKey = auth.NewKey()
	n := startNode(t, cfg)
	secrets, payload := secretsOf(t, n)

	var files []byte
	for _, f := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		files = append(files, b...)
	}
	if len(files) == 0 {
		t.Fatal("read nothing of the store")
	}
	for _, s := range secrets {
		if bytes.Contains(files, []byte(s)) {
			t.Errorf("the SQLite files hold a secret: %.12s...", s)
		}
	}

	// Every workflow this test's node ran: their inputs, results, signals
	// and activity payloads, as the Temporal server stores them.
	tc := temporalClient(t)
	list, err := tc.ListWorkflow(ctx(t), &workflowservice.ListWorkflowExecutionsRequest{
		Query: "TaskQueue = '" + cfg.TaskQueue + "'",
	})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, ex := range list.GetExecutions() {
		kinds[ex.GetType().GetName()] = true
		it := tc.GetWorkflowHistory(ctx(t), ex.GetExecution().GetWorkflowId(), ex.GetExecution().GetRunId(), false, 0)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			raw, err := proto.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range secrets {
				if bytes.Contains(raw, []byte(s)) {
					t.Errorf("workflow %s event %d (%s) holds a secret: %.12s...", ex.GetExecution().GetWorkflowId(), ev.GetEventId(), ev.GetEventType(), s)
				}
			}
			if bytes.Contains(raw, []byte(payload)) {
				t.Errorf("workflow %s event %d (%s) holds the event's data", ex.GetExecution().GetWorkflowId(), ev.GetEventId(), ev.GetEventType())
			}
		}
	}
	if len(kinds) < 2 {
		t.Errorf("histories of %v scanned, want the delivery and the handshake workflows", kinds)
	}
}

func TestSecrets_PostgresRowsHoldNone(t *testing.T) {
	url := postgresStore(t)
	cfg := nodeConfig(t, url)
	cfg.AdminKey = auth.NewKey()
	n := startNode(t, cfg)
	secrets, _ := secretsOf(t, n)
	conn, err := pgx.Connect(ctx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var dump strings.Builder
	for _, table := range []string{"subscriptions", "api_keys", "events", "deliveries", "attempts"} {
		rows, err := conn.Query(ctx(t), "SELECT t::text FROM "+table+" t")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var row string
			if err := rows.Scan(&row); err != nil {
				t.Fatal(err)
			}
			dump.WriteString(row + "\n")
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(dump.String(), "enc:v1:e2e:") {
		t.Fatal("no sealed value in the rows: the dump read nothing of the subscriptions")
	}
	for _, s := range secrets {
		if strings.Contains(dump.String(), s) {
			t.Errorf("a PostgreSQL row holds a secret: %.12s...", s)
		}
	}
}

func TestSecrets_HeaderValuesAreWriteOnly(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv := heraldtest.NewReceiver(t, nil)
	sub := createSub(t, n, rcv.URL, func(s *heraldv1.Subscription) {
		s.ProtocolSettings = &heraldv1.HttpSettings{Headers: map[string]string{"X-Api-Key": "k-123", "X-Team": "payments"}}
	})
	got, err := n.subs.GetSubscription(ctx(t), &heraldv1.GetSubscriptionRequest{Id: sub.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	h := got.GetProtocolSettings().GetHeaders()
	if len(h) != 2 || h["X-Api-Key"] != "" || h["X-Team"] != "" {
		t.Errorf("Get shows headers %v, want the names with empty values", h)
	}
	// Written back as read (every writable field), the values are kept.
	if _, err := n.subs.UpdateSubscription(ctx(t), &heraldv1.UpdateSubscriptionRequest{Subscription: got}); err != nil {
		t.Fatal(err)
	}
	d := publish(t, n, newEvent("header-1"))[0].GetDeliveryIds()[0]
	waitDeliveryState(t, n, d, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	if r := rcv.Requests()[0]; r.Header.Get("X-Api-Key") != "k-123" || r.Header.Get("X-Team") != "payments" {
		t.Errorf("the sink got X-Api-Key %q, X-Team %q", r.Header.Get("X-Api-Key"), r.Header.Get("X-Team"))
	}
}

// pki makes certificates for a test: a CA, and leaves it signs.
type pki struct {
	dir  string
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{dir: t.TempDir(), ca: ca, key: key, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	writePEM(t, filepath.Join(p.dir, "ca.pem"), "CERTIFICATE", der)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// leaf returns a certificate for cn signed by the CA, as a tls.Certificate
// and written to name.pem and name-key.pem.
func (p *pki) leaf(t *testing.T, name, cn string, serial int64) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(p.dir, name+".pem"), "CERTIFICATE", der)
	writePEM(t, filepath.Join(p.dir, name+"-key.pem"), "PRIVATE KEY", kb)
	c, err := tls.LoadX509KeyPair(filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTLS_MutualTLSAuthenticatesByCertificateAndReloads: over mTLS, a
// client certificate of an admin subject may do anything, one mapped to
// a key has that key's scopes, one of an unknown subject is
// unauthenticated, and a client without a certificate cannot connect; a
// certificate replaced on disk is served to new connections while open
// ones go on.
func TestTLS_MutualTLSAuthenticatesByCertificateAndReloads(t *testing.T) {
	p := newPKI(t, "herald test CA")
	p.leaf(t, "server", "herald.test", 2)
	ops := p.leaf(t, "ops", "ops.example", 3)
	billing := p.leaf(t, "billing", "billing.example", 4)
	stranger := p.leaf(t, "stranger", "stranger.example", 5)

	cfg := nodeConfig(t, tempStore(t))
	cfg.TLSCert, cfg.TLSKey = filepath.Join(p.dir, "server.pem"), filepath.Join(p.dir, "server-key.pem")
	cfg.TLSClientCA = filepath.Join(p.dir, "ca.pem")
	cfg.TLSClientAdmins = []string{"ops.example"}
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, cfg) // its own clients speak no TLS: unused here

	dialTLS := func(cert *tls.Certificate, key string) *grpc.ClientConn {
		tc := &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}
		if key != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(publisher.APIKey(key)))
		}
		conn, err := grpc.NewClient(n.GRPCAddr(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	list := func(conn *grpc.ClientConn) codes.Code {
		_, err := heraldv1.NewSubscriptionServiceClient(conn).ListSubscriptions(ctx(t), &heraldv1.ListSubscriptionsRequest{})
		return status.Code(err)
	}

	opsConn := dialTLS(&ops, "")
	if c := list(opsConn); c != codes.OK {
		t.Fatalf("admin subject over mTLS: %s", c)
	}
	if _, err := heraldv1.NewApiKeyServiceClient(opsConn).CreateApiKey(ctx(t), &heraldv1.CreateApiKeyRequest{ApiKey: &heraldv1.ApiKey{
		Scopes: []string{string(policy.ScopePublish)}, CertificateSubject: "billing.example"}}); err != nil {
		t.Fatal(err)
	}
	billingConn := dialTLS(&billing, "")
	heraldtest.Eventually(t, wait, "billing's certificate to stand for its key", func() bool { return list(billingConn) == codes.PermissionDenied })
	if _, err := heraldv1.NewPublishServiceClient(billingConn).Publish(ctx(t), &heraldv1.PublishRequest{Events: []*cloudeventsv1.CloudEvent{newEvent("mtls-1")}}); err != nil {
		t.Errorf("billing's certificate publishing: %v", err)
	}
	if c := list(dialTLS(&stranger, "")); c != codes.Unauthenticated {
		t.Errorf("an unknown subject: %s, want Unauthenticated", c)
	}
	if c := list(dialTLS(nil, "")); c != codes.Unavailable {
		t.Errorf("no client certificate: %s, want the connection refused (Unavailable)", c)
	}
	other := newPKI(t, "another CA")
	foreign := other.leaf(t, "foreign", "ops.example", 9)
	if c := list(dialTLS(&foreign, "")); c != codes.Unavailable {
		t.Errorf("a certificate of another CA with an admin subject: %s, want the connection refused", c)
	}

	// The HTTP edge: same certificates, the same mapping.
	httpClient := func(cert tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: p.pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}}
	}
	for cert, want := range map[*tls.Certificate]int{&ops: 200, &billing: 403, &stranger: 401} {
		resp, err := httpClient(*cert).Get("https://" + n.HTTPAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("/metrics with %s's certificate: %d, want %d", cert.Leaf.Subject.CommonName, resp.StatusCode, want)
		}
	}

	// Reload: a new server certificate (serial 20) is served to new
	// connections; the open one keeps working.
	old := serverSerial(t, p, n.GRPCAddr())
	p.leaf(t, "server", "herald.test", 20)
	heraldtest.Eventually(t, wait, "the new server certificate", func() bool { return serverSerial(t, p, n.GRPCAddr()) == 20 })
	if old == 20 {
		t.Fatal("the first certificate already had serial 20")
	}
	if c := list(opsConn); c != codes.OK {
		t.Errorf("the connection opened before the reload: %s", c)
	}
}

// serverSerial is the serial of the certificate the server presents to a
// new connection.
func serverSerial(t *testing.T, p *pki, addr string) int64 {
	t.Helper()
	c := p.leaf(t, "probe", "ops.example", 99)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{c}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestListeners_StalledClientsDoNotStarvePublishers: with every
// connection slot of both listeners held by clients that send nothing or
// half a header, a publisher already connected keeps publishing and its
// events are delivered; the stalled connections are cut after the
// handshake and header timeouts, so a new client gets in again.
func TestListeners_StalledClientsDoNotStarvePublishers(t *testing.T) {
	cfg := nodeConfig(t, tempStore(t))
	cfg.MaxConnections = 32
	n := startNode(t, cfg)
	rcv := heraldtest.NewReceiver(t, nil)
	createSub(t, n, rcv.URL)
	publish(t, n, newEvent("stall-0")) // the publisher's connection is open

	var stalled []net.Conn
	t.Cleanup(func() {
		for _, c := range stalled {
			c.Close()
		}
	})
	for range 2 * cfg.MaxConnections {
		for _, addr := range []string{n.GRPCAddr(), n.HTTPAddr()} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			if addr == n.HTTPAddr() {
				_, _ = c.Write([]byte("POST /v1/events HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\n"))
			}
			stalled = append(stalled, c)
		}
	}
	for i := range 20 {
		publish(t, n, newEvent(fmt.Sprint("stall-", i+1)))
	}
	rcv.WaitFor(t, 21, wait)

	// A new client gets in once the stalled connections are cut.
	fresh := dial(t, n, "")
	heraldtest.Eventually(t, 3*wait, "a new client to be served", func() bool {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := fresh.subs.ListSubscriptions(c, &heraldv1.ListSubscriptionsRequest{})
		return err == nil
	})
}

// TestLimits_ConfiguredLimitsHold: each limit an operator may set holds
// end to end, with the right status and nothing stored.
func TestLimits_ConfiguredLimitsHold(t *testing.T) {
	cfg := nodeConfig(t, tempStore(t))
	cfg.Limits.MaxEventSize = 600
	cfg.Limits.MaxEventsPerPublish = 2
	cfg.Limits.MaxSubscriptionsPerTenant = 1
	cfg.Limits.MaxHeadersPerSubscription = 1
	n := startNode(t, cfg)
	rcv := heraldtest.NewReceiver(t, nil)
	createSub(t, n, rcv.URL)

	big := newEvent("big")
	big.Data = &cloudeventsv1.CloudEvent_TextData{TextData: strings.Repeat("x", 700)}
	_, err := n.publish.Publish(ctx(t), &heraldv1.PublishRequest{Events: []*cloudeventsv1.CloudEvent{big}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("an event over max-event-size: %v, want InvalidArgument", err)
	}
	_, err = n.publish.Publish(ctx(t), &heraldv1.PublishRequest{Events: []*cloudeventsv1.CloudEvent{newEvent("a"), newEvent("b"), newEvent("c")}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("3 events over max-events-per-publish 2: %v, want InvalidArgument", err)
	}
	resp, err := http.Post("http://"+n.HTTPAddr()+"/v1/events", "application/cloudevents+json",
		strings.NewReader(`{"specversion":"1.0","id":"big-http","source":"/s","type":"t","data":"`+strings.Repeat("x", 700)+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("ingest of an event over max-event-size: %d, want 413", resp.StatusCode)
	}
	_, err = n.subs.CreateSubscription(ctx(t), &heraldv1.CreateSubscriptionRequest{Subscription: &heraldv1.Subscription{
		Sink: rcv.URL, Protocol: "HTTP", SkipValidation: true}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a second subscription of a tenant limited to 1: %v, want ResourceExhausted", err)
	}
	_, err = n.subs.CreateSubscription(ctx(t), &heraldv1.CreateSubscriptionRequest{Subscription: &heraldv1.Subscription{
		Tenant: "other", Sink: rcv.URL, Protocol: "HTTP", SkipValidation: true,
		ProtocolSettings: &heraldv1.HttpSettings{Headers: map[string]string{"X-A": "1", "X-B": "2"}}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("2 headers over max-headers-per-subscription 1: %v, want InvalidArgument", err)
	}
	ds, err := n.deliveries.ListDeliveries(ctx(t), &heraldv1.ListDeliveriesRequest{})
	if err != nil || len(ds.GetDeliveries()) != 0 {
		t.Errorf("%d deliveries stored (%v), want none", len(ds.GetDeliveries()), err)
	}
}
