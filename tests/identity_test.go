package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestServeVerifiedIdentity runs `flashsale serve` with a public key from the environment and
// checks that purchases and order reads take the user from the bearer token.
func TestServeVerifiedIdentity(t *testing.T) {
	s := newStack(t)
	s.setStock(t, "a", 10)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "jwt.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(s.env(s.dsn),
		"FLASHSALE_AUTH_JWT_PUBLIC_KEY_FILE="+keyFile,
		"FLASHSALE_AUTH_JWT_CLAIM=uid",
		"FLASHSALE_AUTH_JWT_ISSUER=https://idp.example",
	)
	p := startProcess(t, "serve", env, "serve", "-consumer", "identity")
	srv := &server{process: p}
	srv.httpAddr = p.waitLog(t, httpListening, 15*time.Second)[1]
	token := func(user, iss string) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
			"uid": user, "iss": iss, "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	c := newHTTPClient()
	do := func(method, path, token, body string) (int, apiReply, http.Header) {
		t.Helper()
		req, err := http.NewRequest(method, srv.url(path), strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		var r apiReply
		json.NewDecoder(resp.Body).Decode(&r)
		return resp.StatusCode, r, resp.Header
	}
	const body = `{"request_id":"r-1","item_id":"a","quantity":1}`

	if code, _, h := do(http.MethodPost, "/api/purchase", "", body); code != http.StatusUnauthorized || h.Get("WWW-Authenticate") == "" {
		t.Fatalf("purchase without a token: got %d (WWW-Authenticate %q), want 401 with a challenge", code, h.Get("WWW-Authenticate"))
	}
	if code, r, _ := do(http.MethodPost, "/api/purchase", token("alice", "https://evil.example"), body); code != http.StatusUnauthorized {
		t.Fatalf("purchase with another issuer's token: got %d %+v, want 401", code, r)
	}
	code, r, _ := do(http.MethodPost, "/api/purchase", token("alice", "https://idp.example"), body)
	if code != http.StatusOK || r.OrderID == "" {
		t.Fatalf("alice's purchase: got %d %+v, want 200 with an order_id", code, r)
	}
	if code, r, _ := do(http.MethodPost, "/api/purchase", token("bob", "https://idp.example"), `{"request_id":"r-2","user_id":"alice","item_id":"a","quantity":1}`); code != http.StatusForbidden {
		t.Fatalf("bob buying as alice: got %d %+v, want 403", code, r)
	}
	e, err := s.l.Order(t.Context(), r.OrderID)
	if err != nil || e.UserID != "alice" {
		t.Fatalf("order %s in the ledger: got %+v, %v, want user alice", r.OrderID, e, err)
	}
	if code, _, _ := do(http.MethodGet, "/api/orders/"+r.OrderID, token("alice", "https://idp.example"), ""); code != http.StatusOK {
		t.Errorf("alice reads her order: got %d, want 200", code)
	}
	if code, _, _ := do(http.MethodGet, "/api/orders/"+r.OrderID, token("bob", "https://idp.example"), ""); code != http.StatusNotFound {
		t.Errorf("bob reads alice's order: got %d, want 404", code)
	}
}
