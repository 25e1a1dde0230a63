package sandbox

import (
	"crypto/rand"
	"encoding/base64"
	"math"
	"net/http"
	"strings"
	"time"
)

type sbAccess struct {
	expires time.Time
	scopes  []string
}

type sbRefresh struct {
	scopes []string
	access string // revoked together with the refresh token, as django-oauth-toolkit does
}

// sbBackoff is Badgr's login backoff for one key (username, or client id without one).
type sbBackoff struct {
	count  int
	until  time.Time
	period time.Duration
}

// Badgr's backoff constants (TOKEN_BACKOFF_PERIOD_SECONDS, TOKEN_BACKOFF_MAXIMUM_SECONDS).
const (
	sbBackoffBase    = 2
	sbBackoffMaxExp  = 12
	sbBackoffMaximum = 3600 * time.Second
)

// sbScopes are the scopes the sandbox's OAuth application allows.
var sbScopes = map[string]bool{
	"r:profile": true, "rw:profile": true, "r:backpack": true, "rw:backpack": true,
	"rw:issuer": true, "rw:issuer:*": true,
}

const sbDefaultScopes = "rw:profile rw:issuer rw:backpack"

func scopeAllowed(sc string) bool {
	return sbScopes[sc] || strings.HasPrefix(sc, "rw:issuer:")
}

// handleToken is POST /o/token (django-oauth-toolkit behind Badgr's validator and throttle).
func (s *Host) handleToken(w http.ResponseWriter, r *http.Request) {
	if r.URL.RawQuery != "" {
		writeJSON(w, "application/json", http.StatusBadRequest,
			map[string]any{"error": "Token grant parameters must be sent in post body, not query parameters"})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, "application/json", http.StatusBadRequest, map[string]any{"error": "invalid_request"})
		return
	}
	f := r.PostForm
	clientID, secret := f.Get("client_id"), f.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		clientID, secret = u, p
	}
	if clientID == "" {
		clientID = "public" // Badgr's OAUTH2_DEFAULT_CLIENT_ID
	}
	grantType := f.Get("grant_type")
	if grantType == "" {
		grantType = "password"
	}
	key := f.Get("username")
	if key == "" {
		key = "client:" + clientID
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()

	// The throttle answers before the view: even correct credentials are refused meanwhile.
	if now.Before(s.throttleUntil) {
		writeThrottled(w, s.throttlePeriod)
		return
	}
	if b := s.backoff[key]; b != nil && now.Before(b.until) {
		writeThrottled(w, b.period)
		return
	}

	status, body := s.grant(now, grantType, clientID, secret, f.Get("scope"), f.Get("username"), f.Get("password"), f.Get("refresh_token"))
	if status/100 == 2 {
		delete(s.backoff, key)
		s.grants[grantType]++
		w.Header().Set("Cache-Control", "no-store")
	} else {
		b := s.backoff[key]
		if b == nil {
			b = &sbBackoff{}
			s.backoff[key] = b
		}
		b.count++
		b.period = min(time.Duration(math.Pow(sbBackoffBase, float64(min(b.count, sbBackoffMaxExp))))*time.Second, sbBackoffMaximum)
		b.until = now.Add(b.period)
	}
	writeJSON(w, "application/json", status, body)
}

// writeThrottled is Badgr's login-backoff answer: text/html with a JSON body, expires = the
// backoff period in seconds, and no Retry-After.
func writeThrottled(w http.ResponseWriter, period time.Duration) {
	writeJSON(w, "text/html; charset=utf-8", http.StatusTooManyRequests, map[string]any{
		"error_description": "Too many login attempts. Please wait and try again.",
		"error":             "login attempts throttled",
		"expires":           int64(math.Ceil(period.Seconds())),
	})
}

func oauthError(code, description string) map[string]any {
	m := map[string]any{"error": code}
	if description != "" {
		m["error_description"] = description
	}
	return m
}

// grant checks one token request and issues a token. Called with s.mu held.
func (s *Host) grant(now time.Time, grantType, clientID, secret, scope, username, password, refreshToken string) (int, map[string]any) {
	if clientID != s.opts.ClientID {
		return http.StatusBadRequest, oauthError("invalid client_id", "")
	}
	if s.opts.ClientSecret != "" && secret != s.opts.ClientSecret {
		return http.StatusBadRequest, oauthError("invalid client_secret", "")
	}
	requested := strings.Fields(scope)
	for _, sc := range requested {
		if !scopeAllowed(sc) {
			return http.StatusBadRequest, oauthError("invalid scope requested", "")
		}
	}
	if len(requested) == 0 {
		requested = strings.Fields(sbDefaultScopes)
	}
	switch grantType {
	case "password":
		if s.opts.Username == "" || username != s.opts.Username || password != s.opts.Password {
			return http.StatusBadRequest, oauthError("invalid_grant", "Invalid credentials given.")
		}
		return http.StatusOK, s.issue(now, requested, true)
	case "refresh_token":
		old, ok := s.refresh[refreshToken]
		if refreshToken == "" || !ok {
			return http.StatusBadRequest, oauthError("invalid_grant", "")
		}
		// Rotation: the old refresh token and its access token stop working.
		delete(s.refresh, refreshToken)
		delete(s.access, old.access)
		scopes := old.scopes
		if scope != "" {
			scopes = requested
		}
		return http.StatusOK, s.issue(now, scopes, true)
	case "client_credentials":
		return http.StatusOK, s.issue(now, requested, false)
	default:
		return http.StatusBadRequest, oauthError("unsupported_grant_type", "")
	}
}

// issue creates an access token (and a refresh token when withRefresh). Called with s.mu held.
func (s *Host) issue(now time.Time, scopes []string, withRefresh bool) map[string]any {
	access := randomToken()
	s.access[access] = &sbAccess{expires: now.Add(s.opts.TokenTTL), scopes: scopes}
	s.issued = append(s.issued, access)
	out := map[string]any{
		"access_token": access,
		"expires_in":   int64(s.opts.TokenTTL / time.Second),
		"token_type":   "Bearer",
		"scope":        strings.Join(scopes, " "),
	}
	if withRefresh {
		refresh := randomToken()
		s.refresh[refresh] = &sbRefresh{scopes: scopes, access: access}
		s.issued = append(s.issued, refresh)
		out["refresh_token"] = refresh
	}
	return out
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// authorize checks the Bearer token of an issuing call and answers 401 (no, unknown or expired
// token) or 404 (a token without an issuing scope: v2 never answers 403) itself. It reports
// whether the call may go on. Called without s.mu held.
func (s *Host) authorize(w http.ResponseWriter, r *http.Request) bool {
	h := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	s.mu.Lock()
	a, ok := s.access[token]
	valid := ok && token != "" && strings.EqualFold(scheme, "Bearer") && s.now().Before(a.expires)
	issuing := false
	if valid {
		for _, sc := range a.scopes {
			if sc == "rw:issuer" || strings.HasPrefix(sc, "rw:issuer:") {
				issuing = true
			}
		}
	}
	s.mu.Unlock()
	switch {
	case !valid:
		s.writeError(w, r, http.StatusUnauthorized, descNoAuth, nil, nil)
		return false
	case !issuing:
		s.writeNotFound(w, r)
		return false
	}
	return true
}
