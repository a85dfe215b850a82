// Package cli is the operator's and subscriber's command line: herald
// subscriptions, deliveries, dead-letters, events, keys and publish, each
// a call to a running Herald's gRPC API, printed as a table or as JSON or
// YAML.
package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/heraldhq/herald/clients/publisher"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// Exit codes.
const (
	ExitOK       = 0
	ExitError    = 1
	ExitUsage    = 2
	ExitNotFound = 3
)

// Nouns are the commands this package runs (herald <noun> <verb>).
var Nouns = []string{"subscriptions", "deliveries", "dead-letters", "events", "keys", "publish"}

// command is one verb of a noun.
type command struct {
	usage string // arguments and what it does, for help
	run   func(c *call) error
}

// nouns maps noun and verb to their command; publish has the verb "".
var nouns = map[string]map[string]command{}

// IO is where a command reads and writes.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
}

// Run runs `herald noun args...` and returns the exit code.
func Run(ctx context.Context, noun string, args []string, stdio IO) int {
	verbs, ok := nouns[noun]
	if !ok {
		fmt.Fprintf(stdio.Err, "herald: unknown command %q\n", noun)
		return ExitUsage
	}
	verb := ""
	if _, single := verbs[""]; !single {
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			usage(stdio.Err, noun, verbs)
			return ExitUsage
		}
		verb, args = args[0], args[1:]
	}
	cmd, ok := verbs[verb]
	if !ok {
		fmt.Fprintf(stdio.Err, "herald %s: unknown command %q\n", noun, verb)
		usage(stdio.Err, noun, verbs)
		return ExitUsage
	}
	c := &call{ctx: ctx, io: stdio, name: strings.TrimSpace("herald " + noun + " " + verb)}
	c.flags = flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.flags.SetOutput(stdio.Err)
	c.conn.register(c.flags)
	c.flags.StringVar(&c.output, "o", "table", "output: table, json or yaml")
	c.flags.Usage = func() {
		fmt.Fprintf(stdio.Err, "usage: %s %s\n\nflags:\n", c.name, cmd.usage)
		c.flags.PrintDefaults()
	}
	c.args = args
	err := cmd.run(c)
	return exitCode(stdio.Err, c.name, err)
}

func usage(w io.Writer, noun string, verbs map[string]command) {
	fmt.Fprintf(w, "usage:\n")
	names := make([]string, 0, len(verbs))
	for v := range verbs {
		names = append(names, v)
	}
	sort.Strings(names)
	for _, v := range names {
		fmt.Fprintf(w, "  herald %s %s %s\n", noun, v, verbs[v].usage)
	}
}

// exitCode prints err, if any, in one readable line (the gRPC status and
// its details) and says how to exit.
func exitCode(w io.Writer, name string, err error) int {
	if err == nil {
		return ExitOK
	}
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(w, "%s: %s\n", name, ue)
		}
		return ExitUsage
	}
	st, ok := status.FromError(err)
	if !ok {
		fmt.Fprintf(w, "%s: %v\n", name, err)
		return ExitError
	}
	msg := st.Code().String() + ": " + st.Message()
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				msg += fmt.Sprintf("; %s: %s", v.GetField(), v.GetDescription())
			}
		case *errdetails.RetryInfo:
			msg += fmt.Sprintf("; retry in %s", d.GetRetryDelay().AsDuration())
		}
	}
	fmt.Fprintf(w, "%s: %s\n", name, msg)
	if st.Code() == codes.NotFound {
		return ExitNotFound
	}
	return ExitError
}

// usageError is a mistake in how the command was called.
type usageError string

func (e usageError) Error() string { return string(e) }

// call is one command being run.
type call struct {
	ctx    context.Context
	io     IO
	name   string
	flags  *flag.FlagSet
	args   []string
	conn   connFlags
	output string
	watch  time.Duration // --watch, on lists
	cc     *grpc.ClientConn
}

// parse parses the command's flags and returns its positional arguments,
// which must number between min and max (max < 0: any).
func (c *call) parse(minArgs, maxArgs int) ([]string, error) {
	// Flags may come after positional arguments too.
	var pos []string
	args := c.args
	for {
		if err := c.flags.Parse(args); err != nil {
			return nil, err
		}
		rest := c.flags.Args()
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) < minArgs || (maxArgs >= 0 && len(pos) > maxArgs) {
		c.flags.Usage()
		return nil, usageError(fmt.Sprintf("wrong number of arguments (%d)", len(pos)))
	}
	if !slices.Contains([]string{"table", "json", "yaml"}, c.output) {
		return nil, usageError("-o must be table, json or yaml")
	}
	return pos, nil
}

// dial connects to Herald as the connection flags say.
func (c *call) dial() (*grpc.ClientConn, error) {
	if c.cc != nil {
		return c.cc, nil
	}
	opts, err := c.conn.options()
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient(c.conn.addr, opts...)
	if err != nil {
		return nil, err
	}
	c.cc = cc
	return cc, nil
}

func (c *call) subs() (heraldv1.SubscriptionServiceClient, error) {
	cc, err := c.dial()
	if err != nil {
		return nil, err
	}
	return heraldv1.NewSubscriptionServiceClient(cc), nil
}

func (c *call) deliveries() (heraldv1.DeliveryServiceClient, error) {
	cc, err := c.dial()
	if err != nil {
		return nil, err
	}
	return heraldv1.NewDeliveryServiceClient(cc), nil
}

// connFlags say how to reach Herald: flags, else the environment.
type connFlags struct {
	addr, apiKey                  string
	tls                           bool
	tlsCA, tlsCert, tlsKey, tlsSN string
}

func (f *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", envOr("HERALD_ADDR", "127.0.0.1:50051"), "Herald's gRPC address (HERALD_ADDR)")
	fs.StringVar(&f.apiKey, "api-key", os.Getenv("HERALD_API_KEY"), "API key (HERALD_API_KEY)")
	fs.BoolVar(&f.tls, "tls", os.Getenv("HERALD_TLS") == "true", "connect over TLS (HERALD_TLS=true; implied by the other --tls-* flags)")
	fs.StringVar(&f.tlsCA, "tls-ca", os.Getenv("HERALD_TLS_CA"), "PEM authorities to trust instead of the system's (HERALD_TLS_CA)")
	fs.StringVar(&f.tlsCert, "tls-cert", os.Getenv("HERALD_TLS_CERT"), "PEM client certificate, for mTLS (HERALD_TLS_CERT)")
	fs.StringVar(&f.tlsKey, "tls-key", os.Getenv("HERALD_TLS_KEY"), "PEM key of --tls-cert (HERALD_TLS_KEY)")
	fs.StringVar(&f.tlsSN, "tls-server-name", os.Getenv("HERALD_TLS_SERVER_NAME"), "name to verify the server's certificate against")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (f *connFlags) options() ([]grpc.DialOption, error) {
	secure := f.tls || f.tlsCA != "" || f.tlsCert != "" || f.tlsSN != ""
	var opts []grpc.DialOption
	if !secure {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if f.apiKey != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(publisher.InsecureAPIKey(f.apiKey)))
		}
		return opts, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.tlsSN}
	if f.tlsCA != "" {
		pem, err := os.ReadFile(f.tlsCA)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", f.tlsCA)
		}
	}
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if f.apiKey != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(publisher.APIKey(f.apiKey)))
	}
	return opts, nil
}

// Verbs returns each noun's verbs, for shell completion.
func Verbs() map[string][]string {
	out := make(map[string][]string, len(nouns))
	for noun, verbs := range nouns {
		var vs []string
		for v := range verbs {
			if v != "" {
				vs = append(vs, v)
			}
		}
		sort.Strings(vs)
		out[noun] = vs
	}
	return out
}
