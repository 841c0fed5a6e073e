package ingest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strings"
	"time"
)

// A token's claims are checked here rather than by the jwt package, so that a refusal names
// the claim that failed (the package answers a missing aud as a missing required claim, which
// read as "no exp", and a far-off exp such as 1e30 as expired) and so that a token whose
// header or claims hold a key twice is refused: encoding/json would keep the last one, and two
// readers of one token could then see two users.

// maxNumericDate is the latest time a NumericDate may name: 9999-12-31T23:59:59Z. A larger one
// (or a negative one, or not a number) is invalid, not far in the future.
const maxNumericDate = 253402300799

// uniqueKeys refuses a token whose header or claims, decoded from base64url, are not one JSON
// object with each key at most once, at every depth. Its reasons are client-safe.
func uniqueKeys(token string) *TokenError {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return &TokenError{Reason: "malformed token"}
	}
	for i, what := range []string{"token header has the key ", "token has the claim "} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return &TokenError{Reason: "malformed token"}
		}
		key, err := duplicateKey(b)
		if err != nil {
			return &TokenError{Reason: "malformed token"}
		}
		if key != "" {
			return &TokenError{Reason: what + quoteless.Replace(safeName(key)) + " twice"}
		}
	}
	return nil
}

// duplicateKey returns the first key that appears twice in one object of the JSON document b,
// or "" if none does; an error if b is not one JSON value.
func duplicateKey(b []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	// One entry per open object (its keys) or array (nil); expectKey tells whether the next
	// string of the innermost object is a key.
	var (
		objects   []map[string]bool
		expectKey []bool
	)
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", err
		}
		top := len(objects) - 1
		if top >= 0 && objects[top] != nil && expectKey[top] {
			if key, ok := tok.(string); ok {
				if objects[top][key] {
					return key, nil
				}
				objects[top][key] = true
				expectKey[top] = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			objects = append(objects, map[string]bool{})
			expectKey = append(expectKey, true)
			continue
		case json.Delim('['):
			objects = append(objects, nil)
			expectKey = append(expectKey, false)
			continue
		case json.Delim('}'), json.Delim(']'):
			objects, expectKey = objects[:top], expectKey[:top]
		}
		// A value ended: the innermost object's next string is a key again.
		if n := len(objects) - 1; n >= 0 && objects[n] != nil {
			expectKey[n] = true
		}
	}
	return "", nil
}

// safeName is a key quoted for a message, shortened, and with only printable ASCII kept.
func safeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 32 {
			b.WriteString("...")
			break
		}
		if r < 0x20 || r > 0x7e {
			r = '?'
		}
		b.WriteRune(r)
	}
	return "'" + b.String() + "'"
}

// checkClaims checks the registered claims of a verified token at now: exp (required), nbf,
// and iss and aud when configured, each with a reason naming the claim. Dates are NumericDates
// from 1970 to 9999 (AuthLeeway of skew allowed).
func (a *Authenticator) checkClaims(claims map[string]any, now time.Time) *TokenError {
	exp, ok, valid := numericDate(claims, "exp")
	switch {
	case !ok:
		return &TokenError{Reason: "token has no exp claim"}
	case !valid:
		return &TokenError{Reason: "token exp claim is invalid: want seconds since 1970, before the year 10000"}
	case now.After(exp.Add(AuthLeeway)):
		return &TokenError{Reason: "token expired"}
	}
	nbf, ok, valid := numericDate(claims, "nbf")
	switch {
	case ok && !valid:
		return &TokenError{Reason: "token nbf claim is invalid: want seconds since 1970, before the year 10000"}
	case ok && now.Add(AuthLeeway).Before(nbf):
		return &TokenError{Reason: "token not valid yet"}
	}
	if a.issuer != "" {
		iss, ok := claims["iss"]
		if !ok {
			return &TokenError{Reason: "token has no iss claim"}
		}
		if s, _ := iss.(string); s != a.issuer {
			return &TokenError{Reason: "token has the wrong issuer"}
		}
	}
	if a.audience != "" {
		aud, ok := claims["aud"]
		if !ok {
			return &TokenError{Reason: "token has no aud claim"}
		}
		auds, valid := audiences(aud)
		if !valid {
			return &TokenError{Reason: "token aud claim is invalid: want a string or an array of strings"}
		}
		found := false
		for _, s := range auds {
			found = found || s == a.audience
		}
		if !found {
			return &TokenError{Reason: "token has the wrong audience"}
		}
	}
	return nil
}

// numericDate reads claim name as a NumericDate (RFC 7519: seconds since 1970, maybe with a
// fraction). ok tells whether the claim is present (null counts as absent); valid whether it
// is a number from 0 to maxNumericDate.
func numericDate(claims map[string]any, name string) (t time.Time, ok, valid bool) {
	v, ok := claims[name]
	if !ok || v == nil {
		return time.Time{}, false, false
	}
	n, isNum := v.(json.Number)
	if !isNum {
		return time.Time{}, true, false
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, true, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, true
}

// audiences reads an aud claim: one string, or an array of strings.
func audiences(v any) ([]string, bool) {
	switch x := v.(type) {
	case string:
		return []string{x}, true
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}
