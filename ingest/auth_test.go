package ingest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/flashsale/flashsale/ingest"
	"github.com/flashsale/flashsale/ledger"
	pb "github.com/flashsale/flashsale/proto"
)

// Keys of the tests, made once: RSA key generation takes a while.
var (
	rsaKey      = sync.OnceValue(func() *rsa.PrivateKey { return mustKey(rsa.GenerateKey(rand.Reader, 2048)) })
	otherRSAKey = sync.OnceValue(func() *rsa.PrivateKey { return mustKey(rsa.GenerateKey(rand.Reader, 2048)) })
	ecKey       = sync.OnceValue(func() *ecdsa.PrivateKey { return mustKey(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	otherECKey  = sync.OnceValue(func() *ecdsa.PrivateKey { return mustKey(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
)

var (
	hsSecret      = []byte("0123456789abcdef0123456789abcdef")
	otherHSSecret = []byte("fedcba9876543210fedcba9876543210")
)

func mustKey[K any](k K, err error) K {
	if err != nil {
		panic(err)
	}
	return k
}

func publicPEM(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// claims are a token's claims for user, valid for an hour, with extra set on top (a nil
// value removes the claim).
func claims(user string, extra map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// sign returns the token of c signed with method and key, with header kid when not empty.
func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return s
}

func newAuth(t *testing.T, cfg ingest.AuthConfig) *ingest.Authenticator {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a, err := ingest.NewAuthenticator(ctx, cfg)
	if err != nil {
		t.Fatalf("new authenticator: %v", err)
	}
	return a
}

func bearerOf(token string) []string { return []string{"Bearer " + token} }

const badExp = "token exp claim is invalid: want seconds since 1970, before the year 10000"

// signRaw returns a token of the given header and claims JSON, byte for byte, signed HS256
// with hsSecret.
func signRaw(t *testing.T, header, claims string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	unsigned := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	sig, err := jwt.SigningMethodHS256.Sign(unsigned, hsSecret)
	if err != nil {
		t.Fatal(err)
	}
	return unsigned + "." + enc.EncodeToString(sig)
}

func TestAuthenticatorTokens(t *testing.T) {
	t.Parallel()
	rsaPub, ecPub := publicPEM(t, &rsaKey().PublicKey), publicPEM(t, &ecKey().PublicKey)
	hs := newAuth(t, ingest.AuthConfig{HS256Secret: hsSecret})
	rs := newAuth(t, ingest.AuthConfig{PublicKeyPEM: rsaPub})
	es := newAuth(t, ingest.AuthConfig{PublicKeyPEM: ecPub})
	strict := newAuth(t, ingest.AuthConfig{HS256Secret: hsSecret, Issuer: "https://idp.example", Audience: "flashsale", Claim: "uid"})
	none := func(c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// The classic confusion: an HS256 token whose secret is the server's public key.
	confused := func(pub []byte) string { return sign(t, jwt.SigningMethodHS256, pub, "", claims("alice", nil)) }
	past := map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}

	tests := []struct {
		name       string
		a          *ingest.Authenticator
		authz      []string
		wantUser   string
		wantReason string // "" with wantUser: accepted
	}{
		{"HS256 valid", hs, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("alice", nil))), "alice", ""},
		{"RS256 valid", rs, bearerOf(sign(t, jwt.SigningMethodRS256, rsaKey(), "", claims("bob", nil))), "bob", ""},
		{"ES256 valid", es, bearerOf(sign(t, jwt.SigningMethodES256, ecKey(), "", claims("carol", nil))), "carol", ""},
		{"scheme in lower case", hs, []string{"bearer " + sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("alice", nil))}, "alice", ""},
		{"within the leeway", hs, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("alice", map[string]any{"exp": time.Now().Add(-5 * time.Second).Unix()}))), "alice", ""},
		{"issuer, audience and claim", strict, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("x", map[string]any{"uid": "dave", "iss": "https://idp.example", "aud": []string{"other", "flashsale"}}))), "dave", ""},

		{"expired", hs, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("alice", past))), "", "token expired"},
		{"not valid yet", hs, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("alice", map[string]any{"nbf": time.Now().Add(time.Hour).Unix()}))), "", "token not valid yet"},
		{"no exp", hs, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("alice", map[string]any{"exp": nil}))), "", "token has no exp claim"},
		{"HS256 wrong key", hs, bearerOf(sign(t, jwt.SigningMethodHS256, otherHSSecret, "", claims("alice", nil))), "", "invalid token"},
		{"RS256 wrong key", rs, bearerOf(sign(t, jwt.SigningMethodRS256, otherRSAKey(), "", claims("alice", nil))), "", "invalid token"},
		{"ES256 wrong key", es, bearerOf(sign(t, jwt.SigningMethodES256, otherECKey(), "", claims("alice", nil))), "", "invalid token"},
		{"RS256 to an HS256 server", hs, bearerOf(sign(t, jwt.SigningMethodRS256, rsaKey(), "", claims("alice", nil))), "", "invalid token"},
		{"HS512 to an HS256 server", hs, bearerOf(sign(t, jwt.SigningMethodHS512, hsSecret, "", claims("alice", nil))), "", "invalid token"},
		{"HS256 signed with the RSA public key", rs, bearerOf(confused(rsaPub)), "", "invalid token"},
		{"HS256 signed with the EC public key", es, bearerOf(confused(ecPub)), "", "invalid token"},
		{"ES256 to an RS256 server", rs, bearerOf(sign(t, jwt.SigningMethodES256, ecKey(), "", claims("alice", nil))), "", "invalid token"},
		{"RS512 to an RS256 server", rs, bearerOf(sign(t, jwt.SigningMethodRS512, rsaKey(), "", claims("alice", nil))), "", "invalid token"},
		{"PS256 to an RS256 server", rs, bearerOf(sign(t, jwt.SigningMethodPS256, rsaKey(), "", claims("alice", nil))), "", "invalid token"},
		{"alg none to HS256", hs, bearerOf(none(claims("alice", nil))), "", "invalid token"},
		{"alg none to RS256", rs, bearerOf(none(claims("alice", nil))), "", "invalid token"},
		{"signature stripped", hs, bearerOf(strings.TrimRight(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("alice", nil)), "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")), "", "invalid token"},
		{"wrong issuer", strict, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("x", map[string]any{"uid": "dave", "iss": "https://evil.example", "aud": "flashsale"}))), "", "token has the wrong issuer"},
		{"wrong audience", strict, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("x", map[string]any{"uid": "dave", "iss": "https://idp.example", "aud": "other"}))), "", "token has the wrong audience"},
		{"no user claim", strict, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("x", map[string]any{"iss": "https://idp.example", "aud": "flashsale"}))), "", "token has no uid claim naming the user"},
		{"numeric user claim", hs, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("x", map[string]any{"sub": 42}))), "", "token has no sub claim naming the user"},
		{"empty user claim", hs, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("", nil))), "", "token has no sub claim naming the user"},
		{"no header", hs, nil, "", "missing bearer token"},
		{"basic scheme", hs, []string{"Basic YWxpY2U6cHc="}, "", "want Authorization: Bearer <token>"},
		{"bearer without token", hs, []string{"Bearer "}, "", "want Authorization: Bearer <token>"},
		{"garbage token", hs, bearerOf("not.a.jwt"), "", "malformed token"},
		{"no aud", strict, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("x", map[string]any{"uid": "dave", "iss": "https://idp.example"}))), "", "token has no aud claim"},
		{"no iss", strict, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("x", map[string]any{"uid": "dave", "aud": "flashsale"}))), "", "token has no iss claim"},
		{"aud not a string", strict, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("x", map[string]any{"uid": "dave", "iss": "https://idp.example", "aud": 42}))), "", "token aud claim is invalid: want a string or an array of strings"},
		{"exp 1e30", hs, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("alice", map[string]any{"exp": 1e30}))), "", badExp},
		{"exp a string", hs, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("alice", map[string]any{"exp": "tomorrow"}))), "", badExp},
		{"exp negative", hs, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("alice", map[string]any{"exp": -1}))), "", badExp},
		{"exp with a fraction", hs, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("alice", map[string]any{"exp": float64(time.Now().Add(time.Hour).Unix()) + 0.5}))), "alice", ""},
		{"nbf 1e30", hs, bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("alice", map[string]any{"nbf": 1e30}))), "", "token nbf claim is invalid: want seconds since 1970, before the year 10000"},
		{"sub twice", hs, bearerOf(signRaw(t, `{"alg":"HS256","typ":"JWT"}`, fmt.Sprintf(`{"sub":"alice","exp":%d,"sub":"mallory"}`, time.Now().Add(time.Hour).Unix()))), "", "token has the claim 'sub' twice"},
		{"nested key twice", hs, bearerOf(signRaw(t, `{"alg":"HS256","typ":"JWT"}`, fmt.Sprintf(`{"sub":"alice","exp":%d,"x":[{"k":1},{"k":2,"k":3}]}`, time.Now().Add(time.Hour).Unix()))), "", "token has the claim 'k' twice"},
		{"alg twice in the header", hs, bearerOf(signRaw(t, `{"alg":"HS256","alg":"HS256"}`, fmt.Sprintf(`{"sub":"alice","exp":%d}`, time.Now().Add(time.Hour).Unix()))), "", "token header has the key 'alg' twice"},
		{"same key in sibling objects", hs, bearerOf(signRaw(t, `{"alg":"HS256","typ":"JWT"}`, fmt.Sprintf(`{"sub":"alice","exp":%d,"a":{"k":1},"b":{"k":2}}`, time.Now().Add(time.Hour).Unix()))), "alice", ""},
		{"huge token", hs, bearerOf(strings.Repeat("a", ingest.MaxTokenBytes)), "", "token too long"},
		{"two headers", hs, append(bearerOf(sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("alice", nil))), "Bearer x"), "", "more than one authorization value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, err := tt.a.User(tt.authz)
			if tt.wantReason == "" {
				if err != nil || user != tt.wantUser {
					t.Fatalf("got %q, %v, want %q", user, err, tt.wantUser)
				}
				return
			}
			var te *ingest.TokenError
			if !errors.As(err, &te) || !errors.Is(err, ingest.ErrUnauthenticated) || user != "" {
				t.Fatalf("got %q, %v, want a TokenError", user, err)
			}
			if te.Reason != tt.wantReason {
				t.Errorf("reason: got %q, want %q", te.Reason, tt.wantReason)
			}
		})
	}
}

func TestAuthenticatorConfig(t *testing.T) {
	t.Parallel()
	small := mustKey(rsa.GenerateKey(rand.Reader, 1024))
	p384 := mustKey(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))
	padded := rsaJWK("r1", &rsaKey().PublicKey)
	padded["x-padding"] = strings.Repeat("a", 1<<20)
	huge := serveJWKS(t, padded)
	tests := []struct {
		name string
		cfg  ingest.AuthConfig
		want string
	}{
		{"no source", ingest.AuthConfig{Claim: "sub"}, "want exactly one"},
		{"two sources", ingest.AuthConfig{HS256Secret: hsSecret, PublicKeyPEM: publicPEM(t, &rsaKey().PublicKey)}, "want exactly one"},
		{"short secret", ingest.AuthConfig{HS256Secret: []byte("short")}, "want at least 32"},
		{"RSA 1024", ingest.AuthConfig{PublicKeyPEM: publicPEM(t, &small.PublicKey)}, "want at least 2048"},
		{"P-384", ingest.AuthConfig{PublicKeyPEM: publicPEM(t, &p384.PublicKey)}, "want P-256"},
		{"private key PEM", ingest.AuthConfig{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})}, "want PUBLIC KEY"},
		{"not PEM", ingest.AuthConfig{PublicKeyPEM: []byte("hello")}, "no PEM block"},
		{"JWKS unreachable", ingest.AuthConfig{JWKSURL: "http://127.0.0.1:1/jwks.json"}, "JWK Set"},
		{"JWKS over 1 MiB", ingest.AuthConfig{JWKSURL: huge}, "JWK Set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ingest.NewAuthenticator(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// serveJWKS serves keys as a JWK Set on 127.0.0.1 until the test ends.
func serveJWKS(t *testing.T, keys ...map[string]string) string {
	t.Helper()
	body, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	t.Cleanup(ts.Close)
	return ts.URL + "/jwks.json"
}

func rsaJWK(kid string, k *rsa.PublicKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(t *testing.T, kid string, k *ecdsa.PublicKey) map[string]string {
	t.Helper()
	raw, err := k.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"kty": "EC", "kid": kid, "use": "sig", "crv": "P-256",
		"x": b64(raw[1:33]), "y": b64(raw[33:])}
}

func TestAuthenticatorJWKS(t *testing.T) {
	t.Parallel()
	url := serveJWKS(t,
		rsaJWK("r1", &rsaKey().PublicKey),
		ecJWK(t, "e1", &ecKey().PublicKey),
		map[string]string{"kty": "oct", "kid": "h1", "k": b64(hsSecret)},
	)
	a := newAuth(t, ingest.AuthConfig{JWKSURL: url, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	tests := []struct {
		name     string
		token    string
		wantUser string // "" means refused
	}{
		{"RS256 with kid", sign(t, jwt.SigningMethodRS256, rsaKey(), "r1", claims("alice", nil)), "alice"},
		{"ES256 with kid", sign(t, jwt.SigningMethodES256, ecKey(), "e1", claims("bob", nil)), "bob"},
		{"RS256 without kid", sign(t, jwt.SigningMethodRS256, rsaKey(), "", claims("carol", nil)), "carol"},
		{"ES256 without kid", sign(t, jwt.SigningMethodES256, ecKey(), "", claims("dave", nil)), "dave"},
		{"RS256 by another key", sign(t, jwt.SigningMethodRS256, otherRSAKey(), "r1", claims("alice", nil)), ""},
		{"ES256 naming the RSA kid", sign(t, jwt.SigningMethodES256, ecKey(), "r1", claims("alice", nil)), ""},
		{"RS256 naming the EC kid", sign(t, jwt.SigningMethodRS256, rsaKey(), "e1", claims("alice", nil)), ""},
		{"HS256 with the set's symmetric key", sign(t, jwt.SigningMethodHS256, hsSecret, "h1", claims("alice", nil)), ""},
		{"HS256 without kid", sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("alice", nil)), ""},
		{"expired", sign(t, jwt.SigningMethodRS256, rsaKey(), "r1", claims("alice", map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})), ""},
		{"unknown kid", sign(t, jwt.SigningMethodRS256, otherRSAKey(), "r2", claims("alice", nil)), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, err := a.User(bearerOf(tt.token))
			if tt.wantUser != "" {
				if err != nil || user != tt.wantUser {
					t.Fatalf("got %q, %v, want %q", user, err, tt.wantUser)
				}
				return
			}
			if !errors.Is(err, ingest.ErrUnauthenticated) {
				t.Fatalf("got %q, %v, want ErrUnauthenticated", user, err)
			}
		})
	}
}

// ledgerOrders serves order lookups from the ledger alone (every order is pending).
type ledgerOrders struct{ l *ledger.Ledger }

func (o ledgerOrders) Order(ctx context.Context, id string) (ledger.Order, error) {
	e, err := o.l.Order(ctx, id)
	if err != nil {
		return ledger.Order{}, err
	}
	return ledger.Order{OrderID: e.OrderID, RequestID: e.RequestID, UserID: e.UserID, ItemID: e.ItemID,
		Quantity: e.Quantity, Status: "pending", CreatedAt: e.Time}, nil
}

// newAuthEnv is newEnv with order lookups and bearer tokens verified by a.
func newAuthEnv(t *testing.T, a *ingest.Authenticator) *env {
	t.Helper()
	e := newEnv(t)
	e.reg = prometheus.NewRegistry()
	e.svc = ingest.NewService(e.l, ledgerOrders{e.l}, nil, ingest.NewMetrics(e.reg), slog.New(slog.NewTextHandler(io.Discard, nil)))
	e.svc.RequireAuth(a)
	return e
}

// sendAs is send with an Authorization header of token (none when empty).
func sendAs(t *testing.T, c *http.Client, token, method, url string, body []byte) (response, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: b}, resp.Header
}

func TestHTTPVerifiedIdentity(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, newAuth(t, ingest.AuthConfig{PublicKeyPEM: publicPEM(t, &ecKey().PublicKey)}))
	base, c := e.startHTTP(t)
	setStock(t, e.l, "a", stockSet(10))
	alice := sign(t, jwt.SigningMethodES256, ecKey(), "", claims("alice", nil))
	bob := sign(t, jwt.SigningMethodES256, ecKey(), "", claims("bob", nil))
	expired := sign(t, jwt.SigningMethodES256, ecKey(), "", claims("alice", map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}))
	forged := sign(t, jwt.SigningMethodES256, otherECKey(), "", claims("alice", nil))
	noUser := []byte(`{"request_id":"r-1","item_id":"a","quantity":1}`)

	// Refusals change nothing.
	before := snapshot(t, e.rdb)
	refusals := []struct {
		name, token   string
		body          []byte
		wantStatus    int
		wantMessage   string
		wantChallenge string // "" means no WWW-Authenticate header
	}{
		{"no token", "", noUser, http.StatusUnauthorized, "missing bearer token", `Bearer realm="flashsale"`},
		{"expired token", expired, noUser, http.StatusUnauthorized, "token expired", `Bearer realm="flashsale", error="invalid_token", error_description="token expired"`},
		{"token of another key", forged, noUser, http.StatusUnauthorized, "invalid token", `Bearer realm="flashsale", error="invalid_token", error_description="invalid token"`},
		{"body names another user", alice, purchaseJSON("r-1", "bob", "a", 1), http.StatusForbidden, "user_id does not match the token", ""},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			r, h := sendAs(t, c, tt.token, http.MethodPost, base+"/api/purchase", tt.body)
			rep, err := decodeReply(r)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != tt.wantStatus || rep.Success || rep.Message != tt.wantMessage {
				t.Errorf("got %d %s, want %d %q", r.status, r.body, tt.wantStatus, tt.wantMessage)
			}
			if got := h.Get("WWW-Authenticate"); got != tt.wantChallenge {
				t.Errorf("WWW-Authenticate: got %q, want %q", got, tt.wantChallenge)
			}
		})
	}
	assertUnchanged(t, e.rdb, before)
	m := mustSend(t, c, http.MethodGet, base+"/metrics", nil)
	for _, want := range []string{
		`flashsale_purchases_total{outcome="unauthenticated",transport="http"} 3`,
		`flashsale_purchases_total{outcome="user_mismatch",transport="http"} 1`,
	} {
		if !strings.Contains(string(m.body), want+"\n") {
			t.Errorf("metrics: got no line %q", want)
		}
	}

	// The token names the user: with the body's user_id left out, or the same.
	purchaseAs := func(token string, body []byte) string {
		t.Helper()
		r, _ := sendAs(t, c, token, http.MethodPost, base+"/api/purchase", body)
		rep, err := decodeReply(r)
		if err != nil || r.status != http.StatusOK || rep.OrderID == "" {
			t.Fatalf("purchase: got %d %s (%v), want 200 with an order_id", r.status, r.body, err)
		}
		return rep.OrderID
	}
	aliceOrder := purchaseAs(alice, noUser)
	bobOrder := purchaseAs(bob, purchaseJSON("r-2", "bob", "a", 2))
	checkLedger(t, e.l, map[string]ledger.PurchaseRequest{
		aliceOrder: {RequestID: "r-1", UserID: "alice", ItemID: "a", Quantity: 1},
		bobOrder:   {RequestID: "r-2", UserID: "bob", ItemID: "a", Quantity: 2},
	})

	// Orders: each user reads their own; another's is not found, as if it did not exist.
	reads := []struct {
		name, token, orderID string
		wantStatus           int
	}{
		{"own order", alice, aliceOrder, http.StatusOK},
		{"other user's order", alice, bobOrder, http.StatusNotFound},
		{"own order of the other user", bob, bobOrder, http.StatusOK},
		{"no token", "", aliceOrder, http.StatusUnauthorized},
		{"expired token", expired, aliceOrder, http.StatusUnauthorized},
	}
	unknown, _ := sendAs(t, c, alice, http.MethodGet, base+"/api/orders/0-1-0", nil)
	for _, tt := range reads {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := sendAs(t, c, tt.token, http.MethodGet, base+"/api/orders/"+tt.orderID, nil)
			if r.status != tt.wantStatus {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tt.wantStatus)
			}
			switch r.status {
			case http.StatusOK:
				var o struct {
					OrderID string `json:"order_id"`
				}
				if err := json.Unmarshal(r.body, &o); err != nil || o.OrderID != tt.orderID {
					t.Errorf("got %s, want order %s", r.body, tt.orderID)
				}
			case http.StatusNotFound:
				if string(r.body) != string(unknown.body) || unknown.status != http.StatusNotFound {
					t.Errorf("got %s, want the answer for an order that does not exist: %d %s", r.body, unknown.status, unknown.body)
				}
			}
		})
	}

	// Items stay public.
	if r, _ := sendAs(t, c, "", http.MethodGet, base+"/api/items/a", nil); r.status != http.StatusOK {
		t.Errorf("item without a token: got %d %s, want 200", r.status, r.body)
	}
}

func TestGRPCVerifiedIdentity(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, newAuth(t, ingest.AuthConfig{HS256Secret: hsSecret}))
	client := e.orderClient(t)
	setStock(t, e.l, "a", stockSet(10))
	as := func(token string) context.Context {
		ctx := context.Background()
		if token == "" {
			return ctx
		}
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	alice := sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("alice", nil))
	bob := sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("bob", nil))
	expired := sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("alice", map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}))
	rs := sign(t, jwt.SigningMethodRS256, rsaKey(), "", claims("alice", nil))

	before := snapshot(t, e.rdb)
	refusals := []struct {
		name, token string
		req         *pb.PurchaseRequest
		wantCode    codes.Code
		wantMessage string
	}{
		{"no token", "", &pb.PurchaseRequest{RequestId: "r-1", ItemId: "a", Quantity: 1}, codes.Unauthenticated, "missing bearer token"},
		{"expired token", expired, &pb.PurchaseRequest{RequestId: "r-1", ItemId: "a", Quantity: 1}, codes.Unauthenticated, "token expired"},
		{"wrong algorithm", rs, &pb.PurchaseRequest{RequestId: "r-1", ItemId: "a", Quantity: 1}, codes.Unauthenticated, "invalid token"},
		{"body names another user", alice, &pb.PurchaseRequest{RequestId: "r-1", UserId: "bob", ItemId: "a", Quantity: 1}, codes.PermissionDenied, "user_id does not match the token"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.Purchase(as(tt.token), tt.req)
			st := status.Convert(err)
			if st.Code() != tt.wantCode || st.Message() != tt.wantMessage {
				t.Errorf("got %v %q, want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMessage)
			}
		})
	}
	assertUnchanged(t, e.rdb, before)

	first, err := client.Purchase(as(alice), &pb.PurchaseRequest{RequestId: "r-1", ItemId: "a", Quantity: 1})
	if err != nil {
		t.Fatalf("alice's purchase: %v", err)
	}
	second, err := client.Purchase(as(bob), &pb.PurchaseRequest{RequestId: "r-2", UserId: "bob", ItemId: "a", Quantity: 1})
	if err != nil {
		t.Fatalf("bob's purchase: %v", err)
	}
	checkLedger(t, e.l, map[string]ledger.PurchaseRequest{
		first.GetOrderId():  {RequestID: "r-1", UserID: "alice", ItemID: "a", Quantity: 1},
		second.GetOrderId(): {RequestID: "r-2", UserID: "bob", ItemID: "a", Quantity: 1},
	})

	if o, err := client.GetOrder(as(alice), &pb.GetOrderRequest{OrderId: first.GetOrderId()}); err != nil || o.GetUserId() != "alice" {
		t.Errorf("alice reads her order: got %v, %v", o, err)
	}
	_, errOther := client.GetOrder(as(alice), &pb.GetOrderRequest{OrderId: second.GetOrderId()})
	_, errNone := client.GetOrder(as(alice), &pb.GetOrderRequest{OrderId: "0-1-0"})
	if status.Code(errOther) != codes.NotFound || status.Convert(errOther).Message() != status.Convert(errNone).Message() {
		t.Errorf("alice reads bob's order: got %v, want what an order that does not exist gets: %v", errOther, errNone)
	}
	if _, err := client.GetOrder(as(""), &pb.GetOrderRequest{OrderId: first.GetOrderId()}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("order without a token: got %v, want %v", err, codes.Unauthenticated)
	}
	if _, err := client.GetItem(as(""), &pb.GetItemRequest{ItemId: "a"}); err != nil {
		t.Errorf("item without a token: %v", err)
	}
}

// Without an Authenticator the user_id is taken as sent, as before.
func TestHTTPWithoutAuthTrustsUserID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base, c := e.startHTTP(t)
	setStock(t, e.l, "a", stockSet(1))
	r, _ := sendAs(t, c, "whatever", http.MethodPost, base+"/api/purchase", purchaseJSON("r-1", "anyone", "a", 1))
	if r.status != http.StatusOK {
		t.Fatalf("got %d %s, want 200", r.status, r.body)
	}
}
