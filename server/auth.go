package server

import (
	"context"
	"crypto/x509"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/policy"
)

// Authenticator says who a call runs as (auth.Keyring).
type Authenticator interface {
	// Authenticate returns the principal of a bearer key.
	Authenticate(secret string, now time.Time) (*auth.Principal, error)
	// Certificate returns the principal of a verified client certificate's
	// subject common name.
	Certificate(subject string, now time.Time) (*auth.Principal, error)
}

// Messages of refused calls. They name no key and say nothing that helps
// a guesser.
const (
	unauthenticatedMsg = "a valid API key is required: authorization: Bearer hk_..."
	permissionMsg      = "the API key does not allow this"
)

// authUnary runs every unary call as its caller's principal, after
// checking that the principal holds the method's scope (policy.MethodScopes).
// With a nil Authenticator every call runs as auth.Open.
func authUnary(a Authenticator) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := authorize(ctx, a, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// authStream is authUnary for streaming calls.
func authStream(a Authenticator) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := authorize(ss.Context(), a, info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &principalStream{ServerStream: ss, ctx: ctx})
	}
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }

// authorize returns ctx carrying the caller's principal, or the status
// that refuses the call.
func authorize(ctx context.Context, a Authenticator, method string) (context.Context, error) {
	scope, known := policy.MethodScopes[method]
	if !known {
		metrics.AuthRefused.WithLabelValues("permission").Inc()
		return nil, status.Error(codes.PermissionDenied, "method "+method+" is not in Herald's scopes table")
	}
	if scope == policy.Open {
		return ctx, nil
	}
	if a == nil {
		return auth.WithPrincipal(ctx, auth.Open), nil
	}
	p, err := grpcPrincipal(ctx, a)
	if err != nil {
		metrics.AuthRefused.WithLabelValues("unauthenticated").Inc()
		return nil, status.Error(codes.Unauthenticated, unauthenticatedMsg)
	}
	if p.Authorize(scope) != nil {
		metrics.AuthRefused.WithLabelValues("permission").Inc()
		return nil, status.Error(codes.PermissionDenied, permissionMsg)
	}
	return auth.WithPrincipal(ctx, p), nil
}

// grpcPrincipal authenticates a gRPC call by its bearer key, or else by
// its verified client certificate.
func grpcPrincipal(ctx context.Context, a Authenticator) (*auth.Principal, error) {
	now := time.Now()
	md, _ := metadata.FromIncomingContext(ctx)
	switch vs := md.Get("authorization"); len(vs) {
	case 0:
	case 1:
		key, ok := bearer(vs[0])
		if !ok {
			return nil, auth.ErrUnauthenticated
		}
		return a.Authenticate(key, now)
	default:
		return nil, auth.ErrUnauthenticated
	}
	if pr, ok := peer.FromContext(ctx); ok {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok {
			return a.Certificate(verifiedSubject(ti.State.VerifiedChains), now)
		}
	}
	return nil, auth.ErrUnauthenticated
}

// bearer returns the key of an "Authorization: Bearer <key>" value.
func bearer(v string) (string, bool) {
	scheme, key, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimLeft(key, " "), true
}

// verifiedSubject is the subject common name of a verified client
// certificate, or "".
func verifiedSubject(chains [][]*x509.Certificate) string {
	if len(chains) == 0 || len(chains[0]) == 0 {
		return ""
	}
	return chains[0][0].Subject.CommonName
}

// httpPrincipal authenticates an HTTP request by its bearer key (or, where
// allowQuery, the access_token parameter the CloudEvents webhook spec
// lets senders use), or else by its verified client certificate. A
// refusal comes with the status to answer and why.
func httpPrincipal(a Authenticator, r *http.Request, allowQuery bool) (p *auth.Principal, viaQuery bool, code int, msg string) {
	if a == nil {
		return auth.Open, false, 0, ""
	}
	now := time.Now()
	header := r.Header.Values("Authorization")
	var query []string
	if allowQuery {
		query = r.URL.Query()["access_token"]
	}
	var key string
	switch {
	case len(header) > 0 && len(query) > 0:
		return nil, false, http.StatusBadRequest, "send the API key in the Authorization header or the access_token parameter, not both"
	case len(header) > 1 || len(query) > 1:
		return nil, false, http.StatusBadRequest, "more than one API key in the request"
	case len(header) == 1:
		k, ok := bearer(header[0])
		if !ok {
			return nil, false, http.StatusUnauthorized, "Authorization must be \"Bearer <api key>\""
		}
		key = k
	case len(query) == 1:
		key, viaQuery = query[0], true
	case r.TLS != nil && len(r.TLS.VerifiedChains) > 0:
		p, err := a.Certificate(verifiedSubject(r.TLS.VerifiedChains), now)
		if err != nil {
			return nil, false, http.StatusUnauthorized, "the client certificate stands for no API key; send Authorization: Bearer <api key>"
		}
		return p, false, 0, ""
	default:
		return nil, false, http.StatusUnauthorized, "an API key is required: Authorization: Bearer <api key>"
	}
	p, err := a.Authenticate(key, now)
	if err != nil {
		return nil, false, http.StatusUnauthorized, "invalid API key"
	}
	return p, viaQuery, 0, ""
}

// requireScope serves h only to callers holding scope: 401 without a
// valid key, 403 with a key that lacks the scope.
func requireScope(a Authenticator, scope policy.Scope, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _, code, msg := httpPrincipal(a, r, false)
		if code == 0 && p.Authorize(scope) != nil {
			code, msg = http.StatusForbidden, permissionMsg
		}
		if code != 0 {
			refuseHTTP(w, code, msg)
			return
		}
		h.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})
}

// refuseHTTP answers a refused request as a problem.
func refuseHTTP(w http.ResponseWriter, code int, msg string) {
	switch code {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
		metrics.AuthRefused.WithLabelValues("unauthenticated").Inc()
	case http.StatusForbidden:
		metrics.AuthRefused.WithLabelValues("permission").Inc()
	}
	writeProblem(w, code, msg, nil)
}
