package signing

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// vectors are the project's Standard Webhooks conformance vectors:
// shared/conformance/standard-webhooks.json beside the repository, or
// testdata's copy of it where shared/ is not checked out.
type vectors struct {
	Valid   []map[string]*string `json:"valid"`
	Invalid []map[string]*string `json:"invalid"`
}

// sharedVectors is the shared file, from this package's directory.
const sharedVectors = "../../../shared/conformance/standard-webhooks.json"

func loadVectors(t *testing.T) vectors {
	t.Helper()
	b, err := os.ReadFile("testdata/standard-webhooks.json")
	if err != nil {
		t.Fatal(err)
	}
	if shared, err := os.ReadFile(sharedVectors); err == nil {
		if !bytes.Equal(shared, b) {
			t.Fatalf("testdata/standard-webhooks.json differs from %s: copy it again", sharedVectors)
		}
	} else {
		t.Logf("%s not found; using testdata's copy", sharedVectors)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Valid) < 3 || len(v.Invalid) == 0 {
		t.Fatalf("vectors: %d valid, %d invalid", len(v.Valid), len(v.Invalid))
	}
	return v
}

func str(m map[string]*string, k string) string {
	if p := m[k]; p != nil {
		return *p
	}
	return ""
}

// request returns the headers, body, verification key and clock of a
// vector case.
func request(t *testing.T, c map[string]*string) (http.Header, []byte, string, time.Time) {
	t.Helper()
	h := http.Header{}
	for _, k := range []string{HeaderID, HeaderTimestamp, HeaderSignature} {
		if p := c[k]; p != nil {
			h.Set(k, *p)
		}
	}
	key := str(c, "secret")
	if key == "" {
		key = str(c, "public_key")
	}
	ts, err := strconv.ParseInt(str(c, HeaderTimestamp), 10, 64)
	if err != nil {
		ts = 1614265330 // the vectors' timestamp, for the non-numeric case
	}
	return h, []byte(str(c, "payload")), key, time.Unix(ts, 0)
}

func TestVerify_AcceptsConformanceVectors(t *testing.T) {
	for _, c := range loadVectors(t).Valid {
		t.Run(str(c, "name"), func(t *testing.T) {
			h, body, key, now := request(t, c)
			v, err := NewVerifier(key)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Verify(h, body, now); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

func TestVerify_RejectsConformanceInvalidCases(t *testing.T) {
	vs := loadVectors(t)
	for _, inv := range vs.Invalid {
		t.Run(str(inv, "name"), func(t *testing.T) {
			c := map[string]*string{}
			for k, v := range vs.Valid[0] {
				c[k] = v
			}
			for k, v := range inv {
				if k != "name" {
					c[k] = v // nil: header absent
				}
			}
			h, body, key, now := request(t, c)
			v, err := NewVerifier(key)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Verify(h, body, now); err == nil {
				t.Error("Verify succeeded, want error")
			}
		})
	}
}

func TestSign_MatchesConformanceVectors(t *testing.T) {
	vs := loadVectors(t)
	for _, c := range vs.Valid[:2] {
		t.Run(str(c, "name"), func(t *testing.T) {
			key := str(c, "secret")
			if key == "" {
				key = str(c, "secret_key")
			}
			s, err := NewSigner(key)
			if err != nil {
				t.Fatal(err)
			}
			_, body, _, ts := request(t, c)
			if got, want := s.Sign(str(c, HeaderID), ts, body), str(c, HeaderSignature); got != want {
				t.Errorf("Sign = %q, want %q", got, want)
			}
		})
	}
}

func TestVerify_Tolerance(t *testing.T) {
	secret := NewSecret()
	s, _ := NewSigner(secret)
	ts := time.Unix(1_700_000_000, 0)
	body := []byte(`{}`)
	h := http.Header{}
	h.Set(HeaderID, "msg_1")
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, s.Sign("msg_1", ts, body))
	tests := []struct {
		name      string
		tolerance time.Duration
		now       time.Time
		ok        bool
	}{
		{"same second", 0, ts, true},
		{"5 minutes later", 0, ts.Add(5 * time.Minute), true},
		{"5 minutes earlier", 0, ts.Add(-5 * time.Minute), true},
		{"5 minutes 1 second later", 0, ts.Add(5*time.Minute + time.Second), false},
		{"5 minutes 1 second earlier", 0, ts.Add(-5*time.Minute - time.Second), false},
		{"custom tolerance, inside", time.Hour, ts.Add(59 * time.Minute), true},
		{"custom tolerance, outside", time.Minute, ts.Add(2 * time.Minute), false},
		{"far future clock", 0, time.Unix(1<<62, 0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := NewVerifier(secret)
			if tt.tolerance != 0 {
				v.Tolerance = tt.tolerance
			}
			err := v.Verify(h, body, tt.now)
			if tt.ok && err != nil {
				t.Errorf("Verify: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrTimestampOutOfRange) {
				t.Errorf("Verify = %v, want ErrTimestampOutOfRange", err)
			}
		})
	}
}

func TestSign_RotationSignsWithEveryKey(t *testing.T) {
	oldSecret, newSecret := NewSecret(), NewSecret()
	signingKey, publicKey := NewSigningKey()
	s, err := NewSigner(newSecret, oldSecret, signingKey)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	body := []byte(`{"a":1}`)
	sig := s.Sign("msg_rot", now, body)
	parts := strings.Split(sig, " ")
	if len(parts) != 3 || !strings.HasPrefix(parts[0], "v1,") || !strings.HasPrefix(parts[1], "v1,") || !strings.HasPrefix(parts[2], "v1a,") {
		t.Fatalf("signature header = %q, want v1, v1, v1a entries", sig)
	}
	h := http.Header{}
	h.Set(HeaderID, "msg_rot")
	h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(HeaderSignature, sig)
	for _, key := range []string{oldSecret, newSecret, publicKey} {
		v, err := NewVerifier(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(h, body, now); err != nil {
			t.Errorf("verifier with %.8s...: %v", key, err)
		}
	}
	other, _ := NewVerifier(NewSecret())
	if err := other.Verify(h, body, now); !errors.Is(err, ErrNoMatchingSignature) {
		t.Errorf("unrelated secret: %v, want ErrNoMatchingSignature", err)
	}
}

func TestVerify_IgnoresMalformedAndUnknownEntries(t *testing.T) {
	secret := NewSecret()
	s, _ := NewSigner(secret)
	now := time.Now()
	body := []byte("x")
	good := s.Sign("msg_1", now, body)
	huge := base64.StdEncoding.EncodeToString(make([]byte, 300))
	v, _ := NewVerifier(secret, mustPublicKey(t))
	for _, junk := range []string{"v1", "v1,", "v1a,", "v1,%%%", "v1a,###", "v1," + huge, "v1a," + huge, "v2,abc", ",", "v1,,", "v1a," + huge[:88]} {
		h := http.Header{}
		h.Set(HeaderID, "msg_1")
		h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
		h.Set(HeaderSignature, junk)
		if err := v.Verify(h, body, now); !errors.Is(err, ErrNoMatchingSignature) {
			t.Errorf("%q alone: %v, want ErrNoMatchingSignature", junk, err)
		}
		h.Set(HeaderSignature, junk+"  "+good)
		if err := v.Verify(h, body, now); err != nil {
			t.Errorf("%q before a good signature: %v", junk, err)
		}
	}
}

func mustPublicKey(t *testing.T) string {
	t.Helper()
	_, pub := NewSigningKey()
	return pub
}

func TestSign_ReferenceLibraryVerifies(t *testing.T) {
	for i := range 20 {
		secret := NewSecret()
		s, err := NewSigner(secret)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		body := make([]byte, i*37)
		_, _ = rand.Read(body)
		msgID := fmt.Sprintf("msg_%d", i)
		now := time.Now()

		h := http.Header{}
		h.Set(HeaderID, msgID)
		h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
		h.Set(HeaderSignature, s.Sign(msgID, now, body))
		if err := ref.Verify(body, h); err != nil {
			t.Errorf("reference library rejects our signature: %v", err)
		}

		refSig, err := ref.Sign(msgID, now, body)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Sign(msgID, now, body); got != refSig {
			t.Errorf("Sign = %q, reference = %q", got, refSig)
		}
		h.Set(HeaderSignature, refSig)
		v, _ := NewVerifier(secret)
		if err := v.Verify(h, body, now); err != nil {
			t.Errorf("we reject the reference library's signature: %v", err)
		}
	}
}

func TestNewSecret(t *testing.T) {
	a, b := NewSecret(), NewSecret()
	if a == b {
		t.Error("two secrets are equal")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(a, "whsec_"))
	if !strings.HasPrefix(a, "whsec_") || err != nil || len(raw) != 32 {
		t.Errorf("NewSecret = %q: want whsec_ + base64 of 32 bytes (%v, %d bytes)", a, err, len(raw))
	}
}

func TestNewSignerAndVerifier_RejectBadKeys(t *testing.T) {
	sk, pk := NewSigningKey()
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	tests := []struct {
		name     string
		key      string
		signer   bool
		verifier bool
	}{
		{"no prefix", b64(32), false, false},
		{"not base64", "whsec_!!!", false, false},
		{"secret of 23 bytes", "whsec_" + b64(23), false, false},
		{"secret of 24 bytes", "whsec_" + b64(24), true, true},
		{"secret of 64 bytes", "whsec_" + b64(64), true, true},
		{"secret of 65 bytes", "whsec_" + b64(65), false, false},
		{"signing key", sk, true, false},
		{"public key", pk, false, true},
		{"short signing key", "whsk_" + b64(32), false, false},
		{"short public key", "whpk_" + b64(31), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewSigner(tt.key); (err == nil) != tt.signer {
				t.Errorf("NewSigner error = %v, want ok=%v", err, tt.signer)
			}
			if _, err := NewVerifier(tt.key); (err == nil) != tt.verifier {
				t.Errorf("NewVerifier error = %v, want ok=%v", err, tt.verifier)
			}
		})
	}
	if _, err := NewSigner(); err == nil {
		t.Error("NewSigner() with no keys succeeded")
	}
	if _, err := NewVerifier(); err == nil {
		t.Error("NewVerifier() with no keys succeeded")
	}
}

func BenchmarkSign(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	sk, _ := NewSigningKey()
	for _, bm := range []struct {
		name string
		keys []string
	}{
		{"v1", []string{NewSecret()}},
		{"v1_rotation", []string{NewSecret(), NewSecret()}},
		{"v1a", []string{sk}},
	} {
		s, err := NewSigner(bm.keys...)
		if err != nil {
			b.Fatal(err)
		}
		now := time.Now()
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = s.Sign("msg_01jbenchmark", now, body)
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	secret := NewSecret()
	s, _ := NewSigner(secret)
	v, _ := NewVerifier(secret)
	body := bytes.Repeat([]byte("x"), 1024)
	now := time.Now()
	h := http.Header{}
	h.Set(HeaderID, "msg_1")
	h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(HeaderSignature, s.Sign("msg_1", now, body))
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify(h, body, now); err != nil {
			b.Fatal(err)
		}
	}
}

func TestPublicKey_MatchesTheGeneratedPair(t *testing.T) {
	sk, pk := NewSigningKey()
	got, err := PublicKey(sk)
	if err != nil || got != pk {
		t.Fatalf("PublicKey = %q, %v; want %q", got, err, pk)
	}
	if _, err := PublicKey(NewSecret()); err == nil {
		t.Error("PublicKey of a whsec_ secret succeeded")
	}
}
