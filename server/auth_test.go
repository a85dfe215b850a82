package server

import (
	"testing"

	"google.golang.org/grpc/health"

	"github.com/heraldhq/herald/internal/policy"
)

// TestMethodScopes_CoverEveryServedMethod: a method the server serves but
// the scopes table does not name would be refused to everyone; a name in
// the table that nothing serves is a stale entry.
func TestMethodScopes_CoverEveryServedMethod(t *testing.T) {
	g := NewGRPCServer(NewServices(nil, nil, nil, nil, Options{}), health.NewServer())
	served := map[string]bool{}
	for service, info := range g.GetServiceInfo() {
		for _, m := range info.Methods {
			name := "/" + service + "/" + m.Name
			served[name] = true
			if _, ok := policy.MethodScopes[name]; !ok {
				t.Errorf("%s is served but has no scope in policy.MethodScopes", name)
			}
		}
	}
	for name := range policy.MethodScopes {
		if !served[name] {
			t.Errorf("policy.MethodScopes names %s, which is not served", name)
		}
	}
}
