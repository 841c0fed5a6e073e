package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/flashsale/flashsale/ingest"
)

// authFlags configure verified identity on the purchase API (off when no key source is set).
type authFlags struct {
	secretFile, publicKeyFile, jwksURL *string
	claim, issuer, audience            *string
}

func (f *flags) auth() authFlags {
	return authFlags{
		secretFile:    f.str("auth-jwt-hs256-secret-file", "FLASHSALE_AUTH_JWT_HS256_SECRET_FILE", "", "file holding the HS256 secret (at least 32 bytes; a trailing newline is dropped) that signs users' bearer tokens"),
		publicKeyFile: f.str("auth-jwt-public-key-file", "FLASHSALE_AUTH_JWT_PUBLIC_KEY_FILE", "", "PEM public key (RSA: RS256, ECDSA P-256: ES256) that verifies users' bearer tokens"),
		jwksURL:       f.secret("auth-jwt-jwks-url", "FLASHSALE_AUTH_JWT_JWKS_URL", "", "JWK Set URL whose RS256/ES256 keys verify users' bearer tokens", redactURL),
		claim:         f.str("auth-jwt-claim", "FLASHSALE_AUTH_JWT_CLAIM", "sub", "token claim holding the user_id"),
		issuer:        f.str("auth-jwt-issuer", "FLASHSALE_AUTH_JWT_ISSUER", "", "required token issuer (iss), when set"),
		audience:      f.str("auth-jwt-audience", "FLASHSALE_AUTH_JWT_AUDIENCE", "", "required token audience (aud), when set"),
	}
}

// build returns the Authenticator of the flags, or nil when no key source is set: user_id is
// then taken from requests as sent. ctx bounds the JWK Set refreshes.
func (a authFlags) build(ctx context.Context, log *slog.Logger) (*ingest.Authenticator, error) {
	set := 0
	for _, s := range []string{*a.secretFile, *a.publicKeyFile, *a.jwksURL} {
		if s != "" {
			set++
		}
	}
	switch {
	case set > 1:
		return nil, usageError{"set one of -auth-jwt-hs256-secret-file, -auth-jwt-public-key-file and -auth-jwt-jwks-url"}
	case set == 0 && (*a.issuer != "" || *a.audience != ""):
		return nil, usageError{"-auth-jwt-issuer and -auth-jwt-audience need a key: -auth-jwt-hs256-secret-file, -auth-jwt-public-key-file or -auth-jwt-jwks-url"}
	case set == 0:
		log.Info("identity not verified: user_id is taken from requests as sent (put a gateway in front, or set -auth-jwt-*)")
		return nil, nil
	}
	cfg := ingest.AuthConfig{JWKSURL: *a.jwksURL, Claim: *a.claim, Issuer: *a.issuer, Audience: *a.audience, Log: log}
	source := "JWK Set " + redactURL(*a.jwksURL)
	if *a.secretFile != "" {
		b, err := os.ReadFile(*a.secretFile)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		cfg.HS256Secret = bytes.TrimRight(b, "\r\n")
		source = "HS256 secret"
	}
	if *a.publicKeyFile != "" {
		b, err := os.ReadFile(*a.publicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		cfg.PublicKeyPEM = b
		source = "public key " + *a.publicKeyFile
	}
	auth, err := ingest.NewAuthenticator(ctx, cfg)
	if err != nil {
		return nil, errors.New(scrubURL(err.Error(), *a.jwksURL))
	}
	log.Info("identity verified: purchases and orders need a bearer token", "key", source, "claim", cfg.Claim)
	return auth, nil
}

// scrubURL replaces in msg the credentials that URL raw may carry (its password and query) by
// xxxxx: errors from the JWK Set fetch quote the URL.
func scrubURL(msg, raw string) string {
	u, err := url.Parse(raw)
	if raw == "" || err != nil {
		return msg
	}
	msg = strings.ReplaceAll(msg, raw, redactURL(raw))
	if p, ok := u.User.Password(); ok && p != "" {
		msg = strings.ReplaceAll(msg, p, "xxxxx")
	}
	if u.RawQuery != "" {
		msg = strings.ReplaceAll(msg, u.RawQuery, "xxxxx")
	}
	return msg
}
