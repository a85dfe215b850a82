package publisher

import (
	"context"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// APIKey returns call credentials that send a Herald API key ("hk_...")
// with every call, for grpc.WithPerRPCCredentials. They are only sent
// over TLS; InsecureAPIKey also sends them in the clear.
func APIKey(key string) credentials.PerRPCCredentials {
	return apiKey{header: map[string]string{"authorization": "Bearer " + key}, secure: true}
}

// InsecureAPIKey is APIKey for connections without TLS: a local Herald
// (`herald dev`) or a sidecar on loopback. Anyone who sees the traffic
// sees the key.
func InsecureAPIKey(key string) credentials.PerRPCCredentials {
	return apiKey{header: map[string]string{"authorization": "Bearer " + key}}
}

type apiKey struct {
	header map[string]string
	secure bool
}

func (k apiKey) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return k.header, nil
}

func (k apiKey) RequireTransportSecurity() bool { return k.secure }

// RetryDelay returns how long Herald asked the caller to wait before
// trying again (a key over its publish rate answers RESOURCE_EXHAUSTED
// with a RetryInfo), and whether it asked.
func RetryDelay(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}
