package badgr

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// One access token serves every replica. Badgr rotates refresh tokens on every use, so two
// replicas refreshing with the same refresh token would leave one of them with an invalid grant
// (and count a login failure against the account). Refreshes therefore run under a Redis lock,
// and the holder re-reads the stored token first: when another replica already replaced the token
// that failed, it is used as is.

const (
	// refreshBefore renews a token this long before it expires, so no call races the expiry.
	refreshBefore = 60 * time.Second
	// defaultLoginBlock is how long a refused login holds every call back when the host does not
	// say (Badgr's backoff after a wrong password starts at 2 s and doubles; a minute keeps us
	// clear of it for the first few failures without leaving the bridge idle for long).
	defaultLoginBlock = 60 * time.Second
	// tokenPoll is how often a replica waiting for another one's refresh looks at the store.
	tokenPoll = 50 * time.Millisecond
	// defaultExpiresIn is assumed when a token answer has no usable expires_in.
	defaultExpiresIn = time.Hour
)

// storedToken is the shared token as kept in Redis.
type storedToken struct {
	Access    string    `json:"access"`
	Refresh   string    `json:"refresh,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
	// Account fingerprints base URL, client, username and scope, so a configuration change (or a
	// sandbox sharing the Redis) never reuses a token of another account. It is a hash: the
	// username is personal data.
	Account string `json:"account"`
}

// fresh reports whether t can be used now without refreshing.
func (t *storedToken) fresh(now time.Time) bool {
	return t != nil && t.Access != "" && now.Add(refreshBefore).Before(t.ExpiresAt)
}

func accountFingerprint(cfg Config) string {
	h := sha256.New()
	for _, s := range []string{cfg.BaseURL, cfg.ClientID, cfg.Username, cfg.Scope} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// credentialsFingerprint identifies everything a login sends (host, client, secret, username,
// password, scope) without revealing it: the login block stored in Redis is keyed by it. Anyone
// able to read that Redis already holds the shared access token, so the hash gives away nothing
// of more use than what is there.
func credentialsFingerprint(cfg Config) string {
	h := sha256.New()
	for _, s := range []string{cfg.BaseURL, cfg.ClientID, cfg.ClientSecret, cfg.Username, cfg.Password, cfg.Scope} {
		// Length-prefixed, so no two different settings hash alike by shifting a boundary.
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// loadToken reads the shared token; nil when there is none for this account.
func (c *Client) loadToken(ctx context.Context) (*storedToken, error) {
	b, err := c.rdb.Get(ctx, c.keys.token).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("badgr: read token: %w", err)
	}
	var t storedToken
	if err := json.Unmarshal(b, &t); err != nil || t.Account != c.account {
		// A corrupt or foreign entry is as good as none; the next grant overwrites it.
		return nil, nil
	}
	return &t, nil
}

func (c *Client) storeToken(ctx context.Context, t *storedToken) error {
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("badgr: encode token: %w", err)
	}
	// No TTL: the refresh token outlives the access token, and Badgr refresh tokens do not expire.
	if err := c.rdb.Set(ctx, c.keys.token, b, 0).Err(); err != nil {
		return fmt.Errorf("badgr: store token: %w", err)
	}
	return nil
}

// accessToken returns a token to call the API with, logging in or refreshing when the shared
// one is missing or about to expire.
func (c *Client) accessToken(ctx context.Context) (*storedToken, error) {
	t, err := c.loadToken(ctx)
	if err != nil {
		return nil, err
	}
	if t.fresh(time.Now()) {
		return t, nil
	}
	return c.renew(ctx, t)
}

// Login makes sure a usable token exists, obtaining one from the host when the shared token is
// missing or about to expire. It does not call the host when a fresh token is stored, so it is
// cheap enough for readiness checks; while logins are blocked it fails with *LoginBlockedError.
func (c *Client) Login(ctx context.Context) error {
	_, err := c.accessToken(ctx)
	return err
}

// renew replaces the token that failed (nil: none, or expiring) under the shared lock, or waits
// for the replica holding the lock to do it.
func (c *Client) renew(ctx context.Context, failed *storedToken) (*storedToken, error) {
	lockValue := randomHex(16)
	for {
		ok, err := c.rdb.SetNX(ctx, c.keys.tokenLock, lockValue, c.lockTTL).Result()
		if err != nil {
			return nil, fmt.Errorf("badgr: token lock: %w", err)
		}
		if ok {
			return c.renewLocked(ctx, failed, lockValue)
		}
		// Another replica (or goroutine) is renewing: wait for its result, or for the lock to be
		// released without one (its login failed or it died), then try ourselves.
		if err := sleep(ctx, tokenPoll); err != nil {
			return nil, fmt.Errorf("badgr: waiting for another replica's login: %w", err)
		}
		if until, err := c.LoginBlockedUntil(ctx); err != nil {
			return nil, err
		} else if !until.IsZero() {
			return nil, c.blockedError(ctx, until)
		}
		cur, err := c.loadToken(ctx)
		if err != nil {
			return nil, err
		}
		if replaced(cur, failed) {
			return cur, nil
		}
	}
}

// replaced reports whether cur is a fresh token other than the one that failed.
func replaced(cur, failed *storedToken) bool {
	return cur.fresh(time.Now()) && (failed == nil || cur.Access != failed.Access)
}

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

func (c *Client) renewLocked(ctx context.Context, failed *storedToken, lockValue string) (*storedToken, error) {
	defer func() {
		// Release even when ctx is done; a leaked lock would stall other replicas for lockTTL.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := releaseScript.Run(rctx, c.rdb, []string{c.keys.tokenLock}, lockValue).Err(); err != nil {
			c.log.Warn("badgr: could not release the token lock", "error", err)
		}
	}()
	// Finish well inside the lock's lifetime, so no other replica can take the lock while our
	// refresh token is in flight and use it a second time.
	ctx, cancel := context.WithTimeout(ctx, c.lockTTL-c.lockMargin)
	defer cancel()

	cur, err := c.loadToken(ctx)
	if err != nil {
		return nil, err
	}
	if replaced(cur, failed) {
		return cur, nil
	}
	if cur == nil {
		// The stored token may be foreign or gone; whatever failed is all we know of.
		cur = failed
	}
	t, err := c.grant(ctx, cur)
	if err != nil {
		return nil, err
	}
	if err := c.storeToken(ctx, t); err != nil {
		return nil, err
	}
	return t, nil
}

// grant obtains a new token: with the refresh token when there is one, falling back to the
// configured grant when the host no longer accepts it.
func (c *Client) grant(ctx context.Context, cur *storedToken) (*storedToken, error) {
	if cur != nil && cur.Refresh != "" {
		form := url.Values{
			"grant_type":    {"refresh_token"},
			"refresh_token": {cur.Refresh},
			"client_id":     {c.cfg.ClientID},
		}
		if c.cfg.ClientSecret != "" {
			form.Set("client_secret", c.cfg.ClientSecret)
		}
		t, err := c.tokenRequest(ctx, "refresh_token", form, true)
		if err == nil {
			return t, nil
		}
		if !errors.Is(err, errInvalidGrant) {
			return nil, err
		}
		c.log.Info("badgr: the host no longer accepts the refresh token; logging in again")
	}
	form := url.Values{"client_id": {c.cfg.ClientID}, "scope": {c.cfg.Scope}}
	grantType := "client_credentials"
	if c.cfg.Username != "" {
		grantType = "password"
		form.Set("username", c.cfg.Username)
		form.Set("password", c.cfg.Password)
	}
	form.Set("grant_type", grantType)
	if c.cfg.ClientSecret != "" {
		form.Set("client_secret", c.cfg.ClientSecret)
	}
	return c.tokenRequest(ctx, grantType, form, false)
}

// errInvalidGrant marks a refused refresh token, which is not a login failure yet: the configured
// grant is tried next.
var errInvalidGrant = errors.New("badgr: refresh token rejected (invalid_grant)")

// tokenAnswer is the token endpoint's JSON, success or error.
type tokenAnswer struct {
	AccessToken      string          `json:"access_token"`
	RefreshToken     string          `json:"refresh_token"`
	ExpiresIn        json.Number     `json:"expires_in"`
	TokenType        string          `json:"token_type"`
	Error            string          `json:"error"`
	ErrorDescription string          `json:"error_description"`
	Expires          json.RawMessage `json:"expires"` // login throttling: backoff period in seconds
}

// tokenRequest posts one grant to /o/token. Parameters go in the form body only: Badgr rejects a
// query string, and credentials must never appear in a URL.
func (c *Client) tokenRequest(ctx context.Context, grantType string, form url.Values, refreshing bool) (*storedToken, error) {
	const op = "login"
	if err := c.wait(ctx, op); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, c.cfg.BaseURL+"/o/token", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("badgr %s: build request: %w", op, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, rctx, op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, c.transportError(ctx, rctx, op, err)
	}
	c.log.Debug("badgr: token request", "grant", grantType, "status", resp.StatusCode, "duration", time.Since(start))

	// Badgr answers some token errors as text/html with a JSON body: parse whatever the type.
	var ans tokenAnswer
	jsonErr := json.Unmarshal(body, &ans)

	if resp.StatusCode/100 == 2 {
		if jsonErr != nil || ans.AccessToken == "" {
			return nil, &HostError{Op: op, Status: resp.StatusCode, Message: "token answer without an access token"}
		}
		expiresIn := defaultExpiresIn
		if n, err := ans.ExpiresIn.Int64(); err == nil && n > 0 {
			expiresIn = time.Duration(n) * time.Second
		}
		c.log.Info("badgr: obtained an access token", "grant", grantType, "expires_in", expiresIn)
		return &storedToken{
			Access:    ans.AccessToken,
			Refresh:   ans.RefreshToken, // rotated: the old one no longer works
			ExpiresAt: start.Add(expiresIn),
			Account:   c.account,
		}, nil
	}

	if refreshing && resp.StatusCode == http.StatusBadRequest && ans.Error == "invalid_grant" {
		return nil, errInvalidGrant
	}

	// Any other refusal is a login failure: hold every replica back for the period the host
	// announces, or a minute, so retries do not lengthen Badgr's backoff.
	block := defaultLoginBlock
	if secs, ok := parseExpires(ans.Expires); ok && secs > 0 {
		block = time.Duration(secs * float64(time.Second))
	}
	return nil, c.blockLogin(ctx, block, loginFailureReason(grantType, resp, body, &ans, jsonErr == nil))
}

// loginFailureReason describes a refused login from the OAuth error code and description only;
// the request's credentials are never echoed.
func loginFailureReason(grantType string, resp *http.Response, body []byte, ans *tokenAnswer, isJSON bool) string {
	reason := fmt.Sprintf("%s grant answered %d", grantType, resp.StatusCode)
	switch {
	case isJSON && ans.Error != "":
		reason += " " + ans.Error
		if ans.ErrorDescription != "" {
			reason += ": " + ans.ErrorDescription
		}
	default:
		reason += " " + describeBody(resp.StatusCode, resp.Header.Get("Content-Type"), body, nil)
	}
	return cleanMessage(reason)
}

// parseExpires reads Badgr's throttling "expires" (a number, sometimes sent as a string).
func parseExpires(raw json.RawMessage) (float64, bool) {
	if len(raw) == 0 {
		return 0, false
	}
	var f float64
	if json.Unmarshal(raw, &f) == nil {
		return f, true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if _, err := fmt.Sscan(s, &f); err == nil {
			return f, true
		}
	}
	return 0, false
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b)
}
