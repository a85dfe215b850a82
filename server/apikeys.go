package server

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/id"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/store"
)

// KeyStore stores API keys.
type KeyStore interface {
	APIKeyInsert(ctx context.Context, k *store.APIKey) error
	APIKeyList(ctx context.Context) ([]*store.APIKey, error)
	APIKeyDelete(ctx context.Context, id string) error
}

// KeysChanged, if the key store's Options set it, is called after a key
// is made or deleted, so that this node sees the change at once.
type KeysChanged func(ctx context.Context)

// CreateApiKey implements herald.v1.ApiKeyService.
func (s *Services) CreateApiKey(ctx context.Context, req *heraldv1.CreateApiKeyRequest) (*heraldv1.ApiKey, error) {
	if s.opts.Keys == nil {
		return nil, status.Error(codes.Unimplemented, "this node stores no API keys")
	}
	in := req.GetApiKey()
	if in == nil {
		return nil, invalidArgument("api_key", "required")
	}
	caller := auth.FromContext(ctx)
	k := &store.APIKey{
		ID:                 id.New(id.APIKey),
		DisplayName:        in.GetDisplayName(),
		Tenant:             in.GetTenant(),
		PublishRate:        in.GetPublishRate(),
		PublishBurst:       int(in.GetPublishBurst()),
		CertificateSubject: in.GetCertificateSubject(),
		CreatedAt:          time.Now().UTC().Truncate(time.Millisecond),
	}
	if len(k.DisplayName) > policy.MaxKeyNameLength {
		return nil, invalidArgument("api_key.display_name", fmt.Sprintf("longer than %d bytes", policy.MaxKeyNameLength))
	}
	if len(in.GetScopes()) == 0 {
		return nil, invalidArgument("api_key.scopes", fmt.Sprintf("at least one is required, of %v", policy.Scopes))
	}
	for _, sc := range in.GetScopes() {
		scope := policy.Scope(sc)
		switch {
		case !policy.ValidScope(scope):
			return nil, invalidArgument("api_key.scopes", fmt.Sprintf("unknown scope %q; scopes are %v", sc, policy.Scopes))
		case !caller.Can(scope):
			return nil, status.Errorf(codes.PermissionDenied, "a key cannot grant scope %s, which it does not hold", sc)
		case !slices.Contains(k.Scopes, scope):
			k.Scopes = append(k.Scopes, scope)
		}
	}
	tenant, err := scopedTenant(ctx, k.Tenant)
	if err != nil {
		return nil, err
	}
	k.Tenant = tenant
	if k.Tenant != "" && !policy.ValidTenant(k.Tenant) {
		return nil, invalidArgument("api_key.tenant", fmt.Sprintf("must be 1 to %d lower-case letters, digits, '.', '_' or '-'", policy.MaxTenantLength))
	}
	if t := in.GetExpireTime(); t != nil {
		if err := t.CheckValid(); err != nil || !t.AsTime().After(time.Now()) {
			return nil, invalidArgument("api_key.expire_time", "must be a time in the future")
		}
		k.ExpiresAt = t.AsTime().UTC()
	}
	if r := k.PublishRate; math.IsNaN(r) || math.IsInf(r, 0) || r < 0 || r > policy.MaxPublishRate {
		return nil, invalidArgument("api_key.publish_rate", fmt.Sprintf("must be between 0 (the node's default) and %d events per second", policy.MaxPublishRate))
	}
	if k.PublishBurst < 0 || k.PublishBurst > policy.MaxPublishRate {
		return nil, invalidArgument("api_key.publish_burst", fmt.Sprintf("must be between 0 (the node's default) and %d", policy.MaxPublishRate))
	}
	if len(k.CertificateSubject) > policy.MaxKeyNameLength {
		return nil, invalidArgument("api_key.certificate_subject", fmt.Sprintf("longer than %d bytes", policy.MaxKeyNameLength))
	}
	secret := auth.NewKey()
	k.Hash, k.Hint = auth.Hash(secret), auth.Hint(secret)
	if err := s.opts.Keys.APIKeyInsert(ctx, k); err != nil {
		return nil, storeError(err, "API key")
	}
	s.keysChanged(ctx)
	s.opts.Logger.Info("API key created", "key", k.ID, "name", k.DisplayName, "scopes", k.Scopes, "tenant", k.Tenant, "by", caller.KeyID)
	out := apiKeyToProto(k)
	out.Secret = secret
	return out, nil
}

// ListApiKeys implements herald.v1.ApiKeyService.
func (s *Services) ListApiKeys(ctx context.Context, req *heraldv1.ListApiKeysRequest) (*heraldv1.ListApiKeysResponse, error) {
	if s.opts.Keys == nil {
		return &heraldv1.ListApiKeysResponse{}, nil
	}
	tenant, err := scopedTenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	keys, err := s.opts.Keys.APIKeyList(ctx)
	if err != nil {
		return nil, storeError(err, "API keys")
	}
	resp := &heraldv1.ListApiKeysResponse{}
	for _, k := range keys {
		if tenant == "" || k.Tenant == tenant {
			resp.ApiKeys = append(resp.ApiKeys, apiKeyToProto(k))
		}
	}
	return resp, nil
}

// DeleteApiKey implements herald.v1.ApiKeyService.
func (s *Services) DeleteApiKey(ctx context.Context, req *heraldv1.DeleteApiKeyRequest) (*emptypb.Empty, error) {
	if s.opts.Keys == nil {
		return nil, notFound("API key " + req.GetId())
	}
	keys, err := s.opts.Keys.APIKeyList(ctx)
	if err != nil {
		return nil, storeError(err, "API keys")
	}
	i := slices.IndexFunc(keys, func(k *store.APIKey) bool { return k.ID == req.GetId() })
	caller := auth.FromContext(ctx)
	if i < 0 || !caller.Sees(keys[i].Tenant) || (caller.Tenant != "" && keys[i].Tenant == "") {
		return nil, notFound("API key " + req.GetId())
	}
	if err := s.opts.Keys.APIKeyDelete(ctx, req.GetId()); err != nil {
		return nil, storeError(err, "API key "+req.GetId())
	}
	s.keysChanged(ctx)
	s.opts.Logger.Info("API key deleted", "key", req.GetId(), "by", caller.KeyID)
	return &emptypb.Empty{}, nil
}

func (s *Services) keysChanged(ctx context.Context) {
	if s.opts.KeysChanged != nil {
		s.opts.KeysChanged(ctx)
	}
}

func apiKeyToProto(k *store.APIKey) *heraldv1.ApiKey {
	p := &heraldv1.ApiKey{
		Id:                 k.ID,
		DisplayName:        k.DisplayName,
		Tenant:             k.Tenant,
		SecretHint:         k.Hint,
		CreateTime:         timestamppb.New(k.CreatedAt),
		PublishRate:        k.PublishRate,
		PublishBurst:       int32(k.PublishBurst),
		CertificateSubject: k.CertificateSubject,
	}
	for _, sc := range k.Scopes {
		p.Scopes = append(p.Scopes, string(sc))
	}
	if !k.ExpiresAt.IsZero() {
		p.ExpireTime = timestamppb.New(k.ExpiresAt)
	}
	return p
}
