package ingest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/flashsale/flashsale/ledger"
)

// Verified identity. Without an Authenticator the purchase and order routes trust the user_id
// a request carries (a gateway in front must set it). With one (Service.RequireAuth) they take
// the user from a bearer JWT signed by the configured key: a user_id may be left out and, when
// present, must be that user. In both modes an order is read, paid or cancelled only for the
// user who placed it.

// Identity errors. Both match through the transports' error tables.
var (
	// ErrUnauthenticated: no bearer token, or one that does not verify (HTTP 401 with
	// WWW-Authenticate, gRPC Unauthenticated). Its *TokenError says which.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrUserMismatch: the request names a user_id that is not the token's (HTTP 403, gRPC
	// PermissionDenied).
	ErrUserMismatch = errors.New("user_id does not match the token")
)

// TokenError is why a request was not authenticated. It matches ErrUnauthenticated; its text
// is client-safe.
type TokenError struct {
	// Missing is true when no token came at all (RFC 6750: no error code in the challenge).
	Missing bool
	// Reason is a short description: "missing bearer token", "token expired", ...
	Reason string
}

func (e *TokenError) Error() string { return e.Reason }

// Is reports whether target is ErrUnauthenticated.
func (e *TokenError) Is(target error) bool { return target == ErrUnauthenticated }

var quoteless = strings.NewReplacer(`"`, "'", `\`, "/")

// challenge is the WWW-Authenticate value for e.
func (e *TokenError) challenge() string {
	if e.Missing {
		return `Bearer realm="flashsale"`
	}
	return `Bearer realm="flashsale", error="invalid_token", error_description="` + quoteless.Replace(e.Reason) + `"`
}

// Bounds of the key material and of token checking.
const (
	// MinHS256Secret is the shortest HS256 secret accepted: the hash size (RFC 7518 3.2).
	MinHS256Secret = 32
	// MinRSABits is the smallest RSA key accepted.
	MinRSABits = 2048
	// MaxTokenBytes bounds a bearer token; longer ones are refused unparsed.
	MaxTokenBytes = 8 << 10
	// AuthLeeway is the clock skew allowed on exp and nbf.
	AuthLeeway = 30 * time.Second
	// jwksTimeout bounds one fetch of the JWK Set, and how long a token with an unknown kid may
	// wait for the refresh it triggers.
	jwksTimeout = 5 * time.Second
)

// AuthConfig configures NewAuthenticator. Exactly one key source is set.
type AuthConfig struct {
	// HS256Secret is a shared secret of at least MinHS256Secret bytes; tokens must be HS256.
	HS256Secret []byte
	// PublicKeyPEM is one public key in PEM ("PUBLIC KEY", "RSA PUBLIC KEY" or a
	// "CERTIFICATE"): RSA of at least MinRSABits (tokens must be RS256) or ECDSA P-256 (tokens
	// must be ES256).
	PublicKeyPEM []byte
	// JWKSURL is a JWK Set, fetched at start (NewAuthenticator fails if it cannot be), refreshed
	// hourly and, for a token with an unknown kid, at most every 5 minutes. Tokens must be RS256
	// with an RSA key or ES256 with a P-256 key of the set (keys of other types are never used).
	JWKSURL string
	// HTTPClient fetches JWKSURL; nil means a client with a 5 s timeout.
	HTTPClient *http.Client
	// Claim names the claim that holds the user ID, a non-empty string; "" means "sub".
	Claim string
	// Issuer and Audience, when set, must be the token's iss and one of its aud.
	Issuer, Audience string
	// Log receives refused tokens (debug) and JWK Set refresh failures; nil discards.
	Log *slog.Logger
}

// Authenticator verifies bearer JWTs and names the user they speak for. It is safe for
// concurrent use.
type Authenticator struct {
	parser           *jwt.Parser
	key              jwt.Keyfunc
	claim            string
	issuer, audience string
	log              *slog.Logger
}

// NewAuthenticator returns an Authenticator for cfg. ctx bounds the JWK Set's refreshes: they
// stop when it is done.
func NewAuthenticator(ctx context.Context, cfg AuthConfig) (*Authenticator, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sources := 0
	for _, set := range []bool{len(cfg.HS256Secret) > 0, len(cfg.PublicKeyPEM) > 0, cfg.JWKSURL != ""} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return nil, fmt.Errorf("auth: want exactly one of an HS256 secret, a public key or a JWKS URL, got %d", sources)
	}
	var (
		methods []string
		key     jwt.Keyfunc
	)
	switch {
	case len(cfg.HS256Secret) > 0:
		if len(cfg.HS256Secret) < MinHS256Secret {
			return nil, fmt.Errorf("auth: HS256 secret of %d bytes: want at least %d", len(cfg.HS256Secret), MinHS256Secret)
		}
		secret := append([]byte(nil), cfg.HS256Secret...)
		methods = []string{jwt.SigningMethodHS256.Alg()}
		key = func(*jwt.Token) (any, error) { return secret, nil }
	case len(cfg.PublicKeyPEM) > 0:
		pub, alg, err := parsePublicKey(cfg.PublicKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("auth: public key: %w", err)
		}
		methods = []string{alg}
		key = func(*jwt.Token) (any, error) { return pub, nil }
	default:
		k, err := jwks(ctx, cfg, log)
		if err != nil {
			return nil, err
		}
		methods = []string{jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg()}
		key = k
	}
	// The signature and algorithm are the jwt package's to check; the claims are checkClaims'.
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithoutClaimsValidation(),
		jwt.WithJSONNumber(),
	}
	claim := cfg.Claim
	if claim == "" {
		claim = "sub"
	}
	return &Authenticator{
		parser: jwt.NewParser(opts...), key: key, claim: claim,
		issuer: cfg.Issuer, audience: cfg.Audience, log: log,
	}, nil
}

// parsePublicKey reads one PEM public key and returns it with the only algorithm it verifies.
func parsePublicKey(data []byte) (any, string, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, "", errors.New("no PEM block")
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, "", errors.New("more than one PEM block")
	}
	var (
		pub any
		err error
	)
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		return nil, "", fmt.Errorf("PEM block %q: want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", block.Type)
	}
	if err != nil {
		return nil, "", err
	}
	alg, err := algorithmOf(pub)
	if err != nil {
		return nil, "", err
	}
	return pub, alg, nil
}

// algorithmOf returns the one signing algorithm accepted with key: RS256 for RSA of at least
// MinRSABits, ES256 for ECDSA P-256; anything else is refused.
func algorithmOf(key any) (string, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return "", fmt.Errorf("RSA key of %d bits: want at least %d", k.N.BitLen(), MinRSABits)
		}
		return jwt.SigningMethodRS256.Alg(), nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("ECDSA key on %s: want P-256 (ES256)", k.Curve.Params().Name)
		}
		return jwt.SigningMethodES256.Alg(), nil
	}
	return "", fmt.Errorf("key of type %T: want RSA (RS256) or ECDSA P-256 (ES256)", key)
}

// jwks returns a key function over the JWK Set at cfg.JWKSURL that yields only keys whose type
// fits the token's algorithm.
func jwks(ctx context.Context, cfg AuthConfig, log *slog.Logger) (jwt.Keyfunc, error) {
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: jwksTimeout}
	}
	limited := *client
	limited.Transport = limitBody{limited.Transport}
	fail := false
	k, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:                    &limited,
		HTTPTimeout:               jwksTimeout,
		RateLimitWaitMax:          jwksTimeout,
		NoErrorReturnFirstHTTPReq: &fail,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				log.WarnContext(ctx, "cannot refresh the JWK Set", "url", u, "err", err)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("auth: JWK Set %s: %w", cfg.JWKSURL, err)
	}
	return func(t *jwt.Token) (any, error) {
		got, err := k.Keyfunc(t)
		if err != nil {
			return nil, err
		}
		alg := t.Method.Alg()
		fits := func(key any) bool {
			a, err := algorithmOf(key)
			return err == nil && a == alg
		}
		if set, ok := got.(jwt.VerificationKeySet); ok {
			var keys jwt.VerificationKeySet
			for _, key := range set.Keys {
				if fits(key) {
					keys.Keys = append(keys.Keys, key)
				}
			}
			return keys, nil
		}
		if !fits(got) {
			return nil, fmt.Errorf("key of type %T does not verify %s", got, alg)
		}
		return got, nil
	}, nil
}

// maxJWKSBytes bounds a JWK Set response; a longer one fails to decode.
const maxJWKSBytes = 1 << 20

// limitBody is an http.RoundTripper that cuts response bodies at maxJWKSBytes.
type limitBody struct{ next http.RoundTripper }

func (l limitBody) RoundTrip(req *http.Request) (*http.Response, error) {
	next := l.next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, maxJWKSBytes), resp.Body}
	return resp, nil
}

// User verifies the bearer token of the Authorization values (HTTP headers or gRPC metadata)
// and returns the user it names. Errors are *TokenError.
func (a *Authenticator) User(authorization []string) (string, error) {
	if len(authorization) == 0 {
		return "", &TokenError{Missing: true, Reason: "missing bearer token"}
	}
	if len(authorization) > 1 {
		return "", &TokenError{Reason: "more than one authorization value"}
	}
	if len(authorization[0]) > MaxTokenBytes {
		return "", &TokenError{Reason: "token too long"}
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorization[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", &TokenError{Reason: "want Authorization: Bearer <token>"}
	}
	token = strings.TrimSpace(token)
	claims := jwt.MapClaims{}
	if _, err := a.parser.ParseWithClaims(token, claims, a.key); err != nil {
		a.log.Debug("bearer token refused", "err", err)
		return "", &TokenError{Reason: tokenReason(err)}
	}
	if te := uniqueKeys(token); te != nil {
		return "", te
	}
	if te := a.checkClaims(claims, time.Now()); te != nil {
		return "", te
	}
	user, ok := claims[a.claim].(string)
	if !ok || user == "" {
		return "", &TokenError{Reason: "token has no " + a.claim + " claim naming the user"}
	}
	return user, nil
}

// tokenReason is the client-safe description of an error of the jwt package, which checks
// the form, the algorithm and the signature (the claims are checkClaims').
func tokenReason(err error) string {
	if errors.Is(err, jwt.ErrTokenMalformed) {
		return "malformed token"
	}
	return "invalid token"
}

// RequireAuth makes the purchase and order calls, on HTTP and gRPC, take the user from a
// bearer token verified by a. Call it before serving.
func (s *Service) RequireAuth(a *Authenticator) { s.auth = a }

// authenticate returns the verified user of the authorization values, or "" when identity is
// not verified by this service.
func (s *Service) authenticate(authorization []string) (string, error) {
	if s.auth == nil {
		return "", nil
	}
	return s.auth.User(authorization)
}

// claimUser makes req the verified user's: an empty user_id becomes user, another one is
// ErrUserMismatch. With user "" (identity not verified) req is left as sent.
func claimUser(user string, req *ledger.PurchaseRequest) error {
	if user == "" {
		return nil
	}
	if req.UserID != "" && req.UserID != user {
		return ErrUserMismatch
	}
	req.UserID = user
	return nil
}

// orderUser returns the user an order call (read, pay, cancel) acts for: only that user's
// orders are found. With verified identity it is the token's user, and named (the request's
// user_id) may be left out or must be that user (ErrUserMismatch). Without, it is named, as
// the gateway in front set it, the way a purchase names its user; a call naming no user finds
// no order (ledger.ErrUnknownOrder), so an order ID alone is never enough. verified is the
// result of authenticate.
func (s *Service) orderUser(verified, named string) (string, error) {
	if named != "" {
		if err := ledger.ValidateUserID(named); err != nil {
			return "", err
		}
	}
	switch {
	case s.auth == nil && named == "":
		return "", ledger.ErrUnknownOrder
	case s.auth == nil:
		return named, nil
	case named != "" && named != verified:
		return "", ErrUserMismatch
	}
	return verified, nil
}

// order returns the order if the caller may read it: only the user who placed it, named by
// the token or (without verified identity) by named, the request's user_id. Another user's
// order is ledger.ErrUnknownOrder, as if it did not exist.
func (s *Service) order(ctx context.Context, authorization []string, named, orderID string) (ledger.Order, error) {
	verified, err := s.authenticate(authorization)
	if err != nil {
		return ledger.Order{}, err
	}
	if _, _, err := ledger.ParseOrderID(orderID); err != nil {
		return ledger.Order{}, err
	}
	user, err := s.orderUser(verified, named)
	if err != nil {
		return ledger.Order{}, err
	}
	o, err := s.orders.Order(ctx, orderID)
	if err != nil {
		return ledger.Order{}, err
	}
	if o.UserID != user {
		return ledger.Order{}, ledger.ErrUnknownOrder
	}
	return o, nil
}
