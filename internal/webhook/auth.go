// Package webhook receives Open edX signals over HTTP: it authenticates the sender, parses the
// body and hands the event to intake, answering as contract section 4.1 says.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Tolerance is how far a Standard Webhooks timestamp may be from now.
const Tolerance = 5 * time.Minute

// Auth checks webhook credentials: Standard Webhooks signatures, bearer tokens, query tokens.
type Auth struct {
	secrets     [][]byte // HMAC keys
	tokens      [][32]byte
	queryTokens [][32]byte
	now         func() time.Time
}

// NewAuth builds the checker. Secrets are whsec_<base64>; tokens are compared by their SHA-256
// so the comparison takes the same time whatever their length.
func NewAuth(secrets, tokens, queryTokens []string) (*Auth, error) {
	a := &Auth{now: time.Now}
	for i, s := range secrets {
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
		if err != nil || len(key) == 0 {
			return nil, fmt.Errorf("webhook secret %d: not whsec_<base64>", i+1)
		}
		a.secrets = append(a.secrets, key)
	}
	for _, t := range tokens {
		a.tokens = append(a.tokens, sha256.Sum256([]byte(t)))
	}
	for _, t := range queryTokens {
		a.queryTokens = append(a.queryTokens, sha256.Sum256([]byte(t)))
	}
	return a, nil
}

// Configured tells whether any credential is set; without one every request is refused.
func (a *Auth) Configured() bool {
	return len(a.secrets)+len(a.tokens)+len(a.queryTokens) > 0
}

// ErrUnauthorized is wrapped by every refusal; the text says why without echoing credentials.
var ErrUnauthorized = errors.New("unauthorized")

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnauthorized, fmt.Sprintf(format, args...))
}

// Verify checks one request. A request that carries a Standard Webhooks signature is judged by
// it alone: a bad signature is not rescued by a token.
func (a *Auth) Verify(h http.Header, query string, body []byte) error {
	if Signed(h) {
		return a.verifySignature(h, body)
	}
	return a.VerifyToken(h, query)
}

// Signed reports whether a request claims Standard Webhooks authentication; only such a request
// needs its body read before it is authenticated.
func Signed(h http.Header) bool {
	return h.Get("webhook-signature") != "" || h.Get("webhook-id") != "" || h.Get("webhook-timestamp") != ""
}

// VerifyToken checks the bearer or query token of a request that is not Signed. It needs no body,
// so the handler calls it before reading one.
func (a *Auth) VerifyToken(h http.Header, query string) error {
	if v := h.Get("Authorization"); v != "" {
		tok, ok := bearerToken(v)
		if !ok || !matchAny(a.tokens, tok) {
			return refuse("bearer token not accepted")
		}
		return nil
	}
	if tok := queryToken(query); tok != "" {
		if !matchAny(a.queryTokens, tok) {
			return refuse("query token not accepted")
		}
		return nil
	}
	return refuse("no credential: send a Standard Webhooks signature, an Authorization: Bearer token or ?token=")
}

// VerifySignature checks the Standard Webhooks signature of a Signed request over body.
func (a *Auth) VerifySignature(h http.Header, body []byte) error {
	return a.verifySignature(h, body)
}

// bearerToken takes the token out of an Authorization value. The scheme name is
// case-insensitive and may be followed by several spaces (RFC 7235 section 2.1).
func bearerToken(v string) (string, bool) {
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimLeft(tok, " ")
	return tok, tok != ""
}

// matchAny compares against every configured token, without stopping early, in constant time.
func matchAny(list [][32]byte, tok string) bool {
	sum := sha256.Sum256([]byte(tok))
	found := 0
	for _, t := range list {
		found |= subtle.ConstantTimeCompare(sum[:], t[:])
	}
	return found == 1
}

func queryToken(rawQuery string) string {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return ""
	}
	return q.Get("token")
}

func (a *Auth) verifySignature(h http.Header, body []byte) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return refuse("Standard Webhooks needs webhook-id, webhook-timestamp and webhook-signature")
	}
	if strings.Contains(id, ".") {
		return refuse("webhook-id must not contain '.'")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return refuse("webhook-timestamp is not an integer")
	}
	now := a.now()
	at := time.Unix(sec, 0)
	if at.Before(now.Add(-Tolerance)) {
		return refuse("webhook-timestamp too old (more than 5 minutes)")
	}
	if at.After(now.Add(Tolerance)) {
		return refuse("webhook-timestamp too new (more than 5 minutes ahead)")
	}
	ok := false
	for _, key := range a.secrets {
		want := Sign(key, id, ts, body)
		for _, s := range strings.Fields(sigs) {
			version, sig, found := strings.Cut(s, ",")
			if !found || version != "v1" {
				continue
			}
			if hmac.Equal([]byte(sig), []byte(want)) {
				ok = true
			}
		}
	}
	if !ok {
		return refuse("no matching webhook signature")
	}
	return nil
}

// Sign computes the base64 v1 signature of a Standard Webhooks message.
func Sign(key []byte, id, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}
