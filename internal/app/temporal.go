package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	tlog "go.temporal.io/sdk/log"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/workflows"
)

// TemporalOptions are the Temporal client options cfg describes: the
// address, the namespace, TLS (with a client certificate for mTLS) and an
// API key.
func TemporalOptions(cfg config.Config, logger *slog.Logger) (client.Options, error) {
	opts := client.Options{
		HostPort:  cfg.TemporalAddr,
		Namespace: cfg.TemporalNamespace,
		Logger:    tlog.NewStructuredLogger(logger.With("component", "temporal-sdk")),
	}
	if cfg.TemporalAPIKey != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(cfg.TemporalAPIKey)
	}
	if cfg.Tracing {
		// Workflow starts, workflows and activities become spans of the
		// trace the start was made in (a failed first attempt's), and
		// the client's interceptor is the workers' too.
		tracing, err := temporalotel.NewTracingInterceptor(temporalotel.TracerOptions{})
		if err != nil {
			return opts, fmt.Errorf("temporal tracing: %w", err)
		}
		opts.Interceptors = append(opts.Interceptors, tracing)
	}
	if !cfg.TemporalUsesTLS() {
		return opts, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.TemporalTLSServerName}
	if tc.ServerName == "" {
		if host, _, err := net.SplitHostPort(cfg.TemporalAddr); err == nil {
			tc.ServerName = host
		}
	}
	if cfg.TemporalTLSCA != "" {
		pem, err := os.ReadFile(cfg.TemporalTLSCA)
		if err != nil {
			return opts, fmt.Errorf("temporal-tls-ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return opts, fmt.Errorf("temporal-tls-ca %s: no PEM certificate in it", cfg.TemporalTLSCA)
		}
	}
	if cfg.TemporalTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TemporalTLSCert, cfg.TemporalTLSKey)
		if err != nil {
			return opts, fmt.Errorf("temporal-tls-cert and temporal-tls-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	opts.ConnectionOptions.TLS = tc
	return opts, nil
}

// DialTemporal connects to the Temporal cluster cfg names and checks that
// its namespace exists, with errors that say what to do.
func DialTemporal(ctx context.Context, cfg config.Config, logger *slog.Logger) (client.Client, error) {
	opts, err := TemporalOptions(cfg, logger)
	if err != nil {
		return nil, err
	}
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (tls %v, api key %v): %w", cfg.TemporalAddr, cfg.TemporalUsesTLS(), cfg.TemporalAPIKey != "", err)
	}
	_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: cfg.TemporalNamespace})
	var notFound *serviceerror.NamespaceNotFound
	switch {
	case errors.As(err, &notFound):
		c.Close()
		return nil, fmt.Errorf("no namespace %q on the Temporal cluster at %s: create it (temporal operator namespace create --namespace %s) or set --temporal-namespace",
			cfg.TemporalNamespace, cfg.TemporalAddr, cfg.TemporalNamespace)
	case err != nil:
		c.Close()
		return nil, fmt.Errorf("namespace %q on the Temporal cluster at %s: %w", cfg.TemporalNamespace, cfg.TemporalAddr, err)
	}
	return c, nil
}

// SetUpSearchAttributes registers Herald's search attributes on the
// namespace, or, where Herald may not (Temporal Cloud, a locked-down
// cluster), returns an error with the commands that do it.
func SetUpSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	err := workflows.EnsureSearchAttributes(ctx, c, namespace, workflows.SearchAttributes)
	var denied *serviceerror.PermissionDenied
	var unimplemented *serviceerror.Unimplemented
	if errors.As(err, &denied) || errors.As(err, &unimplemented) {
		return fmt.Errorf("%w\n\nHerald may not register its search attributes on namespace %q. Create them once, then start Herald again:\n\n%s",
			err, namespace, SearchAttributeCommands(namespace))
	}
	return err
}

// SearchAttributeCommands returns the commands that create Herald's search
// attributes: with the Temporal CLI, and with tcld for Temporal Cloud.
func SearchAttributeCommands(namespace string) string {
	var b strings.Builder
	names := slices.Sorted(maps.Keys(workflows.SearchAttributes))
	for _, name := range names {
		fmt.Fprintf(&b, "  temporal operator search-attribute create --namespace %s --name %s --type %s\n", namespace, name, typeName(workflows.SearchAttributes[name]))
	}
	b.WriteString("\nor, on Temporal Cloud:\n\n")
	for _, name := range names {
		fmt.Fprintf(&b, "  tcld namespace search-attributes add --namespace %s --search-attribute \"%s=%s\"\n", namespace, name, typeName(workflows.SearchAttributes[name]))
	}
	return b.String()
}

// typeName is a search attribute type as the CLIs spell it.
func typeName(t enumspb.IndexedValueType) string {
	switch t {
	case enumspb.INDEXED_VALUE_TYPE_KEYWORD:
		return "Keyword"
	case enumspb.INDEXED_VALUE_TYPE_INT:
		return "Int"
	case enumspb.INDEXED_VALUE_TYPE_TEXT:
		return "Text"
	case enumspb.INDEXED_VALUE_TYPE_BOOL:
		return "Bool"
	case enumspb.INDEXED_VALUE_TYPE_DOUBLE:
		return "Double"
	case enumspb.INDEXED_VALUE_TYPE_DATETIME:
		return "Datetime"
	case enumspb.INDEXED_VALUE_TYPE_KEYWORD_LIST:
		return "KeywordList"
	}
	return t.String()
}
