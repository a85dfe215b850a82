package policy

import "slices"

// Scope is one thing an API key may do.
type Scope string

// The scopes. ScopeAdmin holds every other.
const (
	ScopePublish            Scope = "publish"
	ScopeSubscriptionsRead  Scope = "subscriptions.read"
	ScopeSubscriptionsWrite Scope = "subscriptions.write"
	ScopeDeliveriesRead     Scope = "deliveries.read"
	ScopeDeliveriesWrite    Scope = "deliveries.write"
	ScopeEventsRead         Scope = "events.read"
	ScopeEventsWrite        Scope = "events.write"
	ScopeKeysAdmin          Scope = "keys.admin"
	ScopeAdmin              Scope = "admin"
)

// Scopes lists every scope, ScopeAdmin last.
var Scopes = []Scope{
	ScopePublish, ScopeSubscriptionsRead, ScopeSubscriptionsWrite,
	ScopeDeliveriesRead, ScopeDeliveriesWrite, ScopeEventsRead, ScopeEventsWrite, ScopeKeysAdmin, ScopeAdmin,
}

// Open is the scope of a method anyone may call: the health service and
// reflection (which describes the API, never its data).
const Open Scope = ""

// MethodScopes is the scope each gRPC method needs, by full method name.
// A method missing from the table is refused to everyone
// (PERMISSION_DENIED), so that a new method is never open by mistake.
var MethodScopes = map[string]Scope{
	"/herald.v1.PublishService/Publish": ScopePublish,

	"/herald.v1.SubscriptionService/CreateSubscription":    ScopeSubscriptionsWrite,
	"/herald.v1.SubscriptionService/GetSubscription":       ScopeSubscriptionsRead,
	"/herald.v1.SubscriptionService/ListSubscriptions":     ScopeSubscriptionsRead,
	"/herald.v1.SubscriptionService/UpdateSubscription":    ScopeSubscriptionsWrite,
	"/herald.v1.SubscriptionService/DeleteSubscription":    ScopeSubscriptionsWrite,
	"/herald.v1.SubscriptionService/RotateSecret":          ScopeSubscriptionsWrite,
	"/herald.v1.SubscriptionService/ValidateSubscription":  ScopeSubscriptionsWrite,
	"/herald.v1.SubscriptionService/GetSubscriptionHealth": ScopeSubscriptionsRead,

	"/herald.v1.DeliveryService/GetDelivery":        ScopeDeliveriesRead,
	"/herald.v1.DeliveryService/ListDeliveries":     ScopeDeliveriesRead,
	"/herald.v1.DeliveryService/ListAttempts":       ScopeDeliveriesRead,
	"/herald.v1.DeliveryService/RedriveDelivery":    ScopeDeliveriesWrite,
	"/herald.v1.DeliveryService/RedriveDeadLetters": ScopeDeliveriesWrite,
	"/herald.v1.DeliveryService/ResendDelivery":     ScopeDeliveriesWrite,
	"/herald.v1.DeliveryService/Replay":             ScopeDeliveriesWrite,
	"/herald.v1.DeliveryService/GetReplay":          ScopeDeliveriesRead,

	"/herald.v1.EventService/ListEvents":   ScopeEventsRead,
	"/herald.v1.EventService/GetEvent":     ScopeEventsRead,
	"/herald.v1.EventService/EraseEvent":   ScopeEventsWrite,
	"/herald.v1.EventService/EraseSubject": ScopeEventsWrite,

	"/herald.v1.ApiKeyService/CreateApiKey": ScopeKeysAdmin,
	"/herald.v1.ApiKeyService/ListApiKeys":  ScopeKeysAdmin,
	"/herald.v1.ApiKeyService/DeleteApiKey": ScopeKeysAdmin,

	"/grpc.health.v1.Health/Check":                                   Open,
	"/grpc.health.v1.Health/List":                                    Open,
	"/grpc.health.v1.Health/Watch":                                   Open,
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      Open,
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Open,
}

// HTTP edge paths and the scope each needs (health, readiness and the
// validation callback, which carries its own secret token, are open).
const (
	// ScopeIngest is what POST /v1/events needs.
	ScopeIngest = ScopePublish
	// ScopeMetrics is what GET /metrics needs unless metrics are open.
	ScopeMetrics = ScopeAdmin
)

// ValidScope reports whether s names a scope.
func ValidScope(s Scope) bool {
	return slices.Contains(Scopes, s)
}

// Grants reports whether holding scopes allows what need asks: need is
// among them, or they hold ScopeAdmin. Open is granted to all.
func Grants(scopes []Scope, need Scope) bool {
	return need == Open || slices.Contains(scopes, need) || slices.Contains(scopes, ScopeAdmin)
}
