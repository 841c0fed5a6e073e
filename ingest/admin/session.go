package admin

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/flashsale/flashsale/ingest"
)

// sessionCookie is the board's session cookie. Its value is `<expiry>.<nonce>.<mac>`: the
// expiry in unix seconds, 16 random bytes in hex, and an HMAC-SHA256 of both under a key
// derived from the admin token, so that changing the token ends every session. The session
// also lives in Redis (Sessions, keyed by a digest of the nonce, with the session's TTL): a
// cookie is accepted only while its session is there, so signing out ends it on every process
// with the token, also after a restart.
const sessionCookie = "flashsale_admin"

// Sessions keep the board's sessions where every serving process sees them; *ledger.Ledger
// keeps them in Redis.
type Sessions interface {
	StartSession(ctx context.Context, id string, ttl time.Duration) error
	SessionLive(ctx context.Context, id string) (bool, error)
	EndSession(ctx context.Context, id string) error
}

// csrfHeader carries the session's CSRF token on the page's state-changing requests.
const csrfHeader = "X-CSRF-Token"

type session struct {
	nonce   string
	expires time.Time
}

type sessionKey struct{}

// adminAuth checks the admin routes' credentials: the bearer token, or a session cookie
// from the same origin with, on state-changing requests, the session's CSRF token.
type adminAuth struct {
	bearerSum [32]byte
	key       []byte
	ttl       time.Duration
	secure    bool
	now       func() time.Time
	sessions  Sessions
	brake     *brake
	log       *slog.Logger
}

func newAdminAuth(o Options, log *slog.Logger) *adminAuth {
	mac := hmac.New(sha256.New, []byte(o.Token))
	mac.Write([]byte("flashsale admin session key v1"))
	return &adminAuth{
		bearerSum: sha256.Sum256([]byte(o.Token)),
		key:       mac.Sum(nil),
		ttl:       o.SessionTTL,
		secure:    o.SecureCookie,
		now:       o.Now,
		sessions:  o.Ledger,
		brake:     newBrake(o.AuthFailures, o.AuthWindow, o.Now, log),
		log:       log,
	}
}

// sessionID is the name of a session in Sessions: a digest of its nonce, so that what Redis
// holds is not what the cookie holds.
func sessionID(nonce string) string {
	sum := sha256.Sum256([]byte("flashsale admin session id|" + nonce))
	return hex.EncodeToString(sum[:])
}

// tokenOK compares in constant time (of hashes, so that not even the length leaks).
func (a *adminAuth) tokenOK(got string) bool {
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], a.bearerSum[:]) == 1
}

func (a *adminAuth) sign(parts ...string) string {
	mac := hmac.New(sha256.New, a.key)
	mac.Write([]byte(strings.Join(parts, "|")))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// newSession starts a session in Sessions and returns it with its cookie value.
func (a *adminAuth) newSession(ctx context.Context) (session, string, error) {
	var b [16]byte
	rand.Read(b[:])
	s := session{nonce: hex.EncodeToString(b[:]), expires: a.now().Add(a.ttl).Truncate(time.Second)}
	if err := a.sessions.StartSession(ctx, sessionID(s.nonce), a.ttl); err != nil {
		return session{}, "", fmt.Errorf("start admin session: %w", err)
	}
	exp := strconv.FormatInt(s.expires.Unix(), 10)
	return s, exp + "." + s.nonce + "." + a.sign("session", exp, s.nonce), nil
}

// session returns the request's valid session: signed by this token, not expired, and live
// in Sessions (not signed out). err is a failure to ask Sessions.
func (a *adminAuth) session(r *http.Request) (session, bool, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false, nil
	}
	exp, rest, ok1 := strings.Cut(c.Value, ".")
	nonce, mac, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || !hmac.Equal([]byte(mac), []byte(a.sign("session", exp, nonce))) {
		return session{}, false, nil
	}
	sec, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return session{}, false, nil
	}
	s := session{nonce: nonce, expires: time.Unix(sec, 0)}
	if !a.now().Before(s.expires) {
		return session{}, false, nil
	}
	live, err := a.sessions.SessionLive(r.Context(), sessionID(nonce))
	if err != nil {
		return session{}, false, fmt.Errorf("read admin session: %w", err)
	}
	return s, live, nil
}

func (a *adminAuth) csrfToken(s session) string { return a.sign("csrf", s.nonce) }

// sameOrigin reports whether a cookie-carrying request comes from the board's own origin:
// Sec-Fetch-Site, when sent, must say same-origin (or none, a typed address, for reads), and
// Origin, when sent, must name this host. State-changing requests must carry one of them
// (browsers always do).
func sameOrigin(r *http.Request, safe bool) bool {
	site := r.Header.Get("Sec-Fetch-Site")
	origin := r.Header.Get("Origin")
	switch site {
	case "", "same-origin":
	case "none":
		if !safe {
			return false
		}
	default:
		return false
	}
	if origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
			return false
		}
	}
	return safe || site != "" || origin != ""
}

func safeMethod(m string) bool { return m == http.MethodGet || m == http.MethodHead }

// require admits a request with the bearer token, or with a same-origin session cookie and,
// unless it only reads, the session's CSRF token. Bearer attempts go through the brake.
func (a *adminAuth) require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := r.Header.Get("Authorization"); h != "" {
			if a.brake.refuse(w, r) {
				return
			}
			got, ok := strings.CutPrefix(h, "Bearer ")
			if !ok || !a.tokenOK(got) {
				a.brake.fail(r)
				unauthorized(w)
				return
			}
			a.brake.succeed(r)
			next.ServeHTTP(w, r)
			return
		}
		s, ok, err := a.session(r)
		if err != nil {
			a.unavailable(w, r, err)
			return
		}
		if !ok {
			unauthorized(w)
			return
		}
		safe := safeMethod(r.Method)
		if !sameOrigin(r, safe) {
			ingest.WriteError(w, http.StatusForbidden, "cross-origin request refused")
			return
		}
		if !safe {
			got := r.Header.Get(csrfHeader)
			if !hmac.Equal([]byte(got), []byte(a.csrfToken(s))) {
				ingest.WriteError(w, http.StatusForbidden, "missing or wrong CSRF token")
				return
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
	})
}

// unavailable answers 503 when the sessions cannot be read or written, and logs why once.
func (a *adminAuth) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	a.log.Error("admin session", "method", r.Method, "path", r.URL.Path, "err", err)
	ingest.WriteError(w, http.StatusServiceUnavailable, "service unavailable, retry later")
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="flashsale admin"`)
	ingest.WriteError(w, http.StatusUnauthorized, "unauthorized")
}

func (a *adminAuth) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: sessionCookie, Value: value, Path: "/admin", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: a.secure || r.TLS != nil,
	}
}

// handleLogin signs in with the admin token (form field token) and sets the session cookie.
// Failed sign-ins go through the brake.
func (a *adminAuth) handleLogin(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r, true) {
		ingest.WriteError(w, http.StatusForbidden, "cross-origin request refused")
		return
	}
	if a.brake.refuse(w, r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, ingest.MaxBodyBytes)
	if err := r.ParseForm(); err != nil || !a.tokenOK(r.PostForm.Get("token")) {
		a.brake.fail(r)
		ingest.WriteError(w, http.StatusUnauthorized, "wrong admin token")
		return
	}
	a.brake.succeed(r)
	s, value, err := a.newSession(r.Context())
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	http.SetCookie(w, a.cookie(r, value, int(a.ttl.Seconds())))
	w.Header().Set("Cache-Control", "no-store")
	ingest.WriteJSON(w, http.StatusOK, map[string]any{"csrf_token": a.csrfToken(s), "expires_at": s.expires})
}

// handleSession tells the page its CSRF token (the cookie is HttpOnly).
func (a *adminAuth) handleSession(w http.ResponseWriter, r *http.Request) {
	s, ok := r.Context().Value(sessionKey{}).(session)
	if !ok {
		ingest.WriteJSON(w, http.StatusOK, map[string]any{"bearer": true})
		return
	}
	ingest.WriteJSON(w, http.StatusOK, map[string]any{"csrf_token": a.csrfToken(s), "expires_at": s.expires})
}

// handleLogout ends the session: it leaves Sessions, so that every process refuses its
// cookie from now on, and the cookie is cleared.
func (a *adminAuth) handleLogout(w http.ResponseWriter, r *http.Request) {
	if s, ok := r.Context().Value(sessionKey{}).(session); ok {
		if err := a.sessions.EndSession(r.Context(), sessionID(s.nonce)); err != nil {
			a.unavailable(w, r, fmt.Errorf("end admin session: %w", err))
			return
		}
	}
	http.SetCookie(w, a.cookie(r, "", -1))
	ingest.WriteJSON(w, http.StatusOK, map[string]any{"signed_out": true})
}
