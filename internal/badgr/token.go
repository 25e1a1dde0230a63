package badgr

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/badgebridge/bridge/internal/badgr/wire"
	"github.com/badgebridge/bridge/internal/redislock"
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
		// An upgrade from before the hash tag: the token stored under the old key is still good
		// (its refresh token may be the only one the host still honours); the next store moves it.
		b, err = c.rdb.Get(ctx, c.keys.legacyToken).Bytes()
	}
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
	return neutral(err)
}

// renew replaces the token that failed (nil: none, or expiring) under the shared lock, or waits
// for the replica holding the lock to do it.
func (c *Client) renew(ctx context.Context, failed *storedToken) (*storedToken, error) {
	lockValue := wire.RandomHex(16)
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

func (c *Client) renewLocked(ctx context.Context, failed *storedToken, lockValue string) (*storedToken, error) {
	defer func() {
		// Release even when ctx is done; a leaked lock would stall other replicas for lockTTL.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := redislock.Release(rctx, c.rdb, c.keys.tokenLock, lockValue); err != nil {
			c.log.Warn("badgr: could not release the token lock", "err", err)
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
		t, err := c.tokenRequest(ctx, "refresh_token", func(ctx context.Context) (*oauth2.Token, error) {
			// A token without an access token makes the source refresh at once.
			return c.oauthConfig().TokenSource(ctx, &oauth2.Token{RefreshToken: cur.Refresh}).Token()
		}, true)
		if err == nil {
			return t, nil
		}
		if !errors.Is(err, errInvalidGrant) {
			return nil, err
		}
		c.log.Info("badgr: the host no longer accepts the refresh token; logging in again")
	}
	if c.cfg.Username != "" {
		return c.tokenRequest(ctx, "password", func(ctx context.Context) (*oauth2.Token, error) {
			return c.oauthConfig().PasswordCredentialsToken(ctx, c.cfg.Username, c.cfg.Password)
		}, false)
	}
	return c.tokenRequest(ctx, "client_credentials", func(ctx context.Context) (*oauth2.Token, error) {
		cc := clientcredentials.Config{
			ClientID: c.cfg.ClientID, ClientSecret: c.cfg.ClientSecret, TokenURL: c.tokenURL(),
			Scopes: strings.Fields(c.cfg.Scope), AuthStyle: oauth2.AuthStyleInParams,
		}
		return cc.Token(ctx)
	}, false)
}

// oauthConfig describes the host's token endpoint to golang.org/x/oauth2. The client goes in the
// form body, never probed: x/oauth2's auto-detection retries a refused login the other way, and
// Badgr counts each refusal towards its login backoff.
func (c *Client) oauthConfig() *oauth2.Config {
	return &oauth2.Config{
		ClientID: c.cfg.ClientID, ClientSecret: c.cfg.ClientSecret, Scopes: strings.Fields(c.cfg.Scope),
		Endpoint: oauth2.Endpoint{TokenURL: c.tokenURL(), AuthStyle: oauth2.AuthStyleInParams},
	}
}

// tokenURL is Badgr's token endpoint. Parameters go in the form body only: Badgr rejects a query
// string, and credentials must never appear in a URL.
func (c *Client) tokenURL() string { return c.cfg.BaseURL + "/o/token" }

// errInvalidGrant marks a refused refresh token, which is not a login failure yet: the configured
// grant is tried next.
var errInvalidGrant = errors.New("badgr: refresh token rejected (invalid_grant)")

// tokenRequest runs one grant through x/oauth2 (fetch) under the shared rate limit and the call
// timeout, and turns the answer into the shared token, or a refusal into the shared login block.
func (c *Client) tokenRequest(ctx context.Context, grantType string, fetch func(context.Context) (*oauth2.Token, error), refreshing bool) (*storedToken, error) {
	const op = "login"
	if err := c.wait(ctx, op); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	// x/oauth2 reports no status for an answer it cannot use; the transport notes it.
	status := 0
	hc := &http.Client{
		Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
			req = req.Clone(req.Context()) // a RoundTripper must not change its caller's request
			req.Header.Set("Accept", wire.MediaJSON)
			req.Header.Set("User-Agent", userAgent)
			resp, err := c.transport.RoundTrip(req)
			if err == nil {
				status = resp.StatusCode
			}
			return resp, err
		}),
		CheckRedirect: c.http.CheckRedirect,
	}
	start := time.Now()
	tok, err := fetch(context.WithValue(rctx, oauth2.HTTPClient, hc))
	c.log.Debug("badgr: token request", "grant", grantType, "status", status, "duration_ms", time.Since(start).Milliseconds())

	var re *oauth2.RetrieveError
	switch {
	case err == nil:
		expiresAt := start.Add(defaultExpiresIn)
		if tok.ExpiresIn > 0 {
			expiresAt = start.Add(time.Duration(tok.ExpiresIn) * time.Second)
		} else if !tok.Expiry.IsZero() {
			expiresAt = tok.Expiry
		}
		c.log.Info("badgr: obtained an access token", "grant", grantType, "expires_in", expiresAt.Sub(start).Round(time.Second).String())
		return &storedToken{
			Access:    tok.AccessToken,
			Refresh:   tok.RefreshToken, // rotated: the old one no longer works
			ExpiresAt: expiresAt,
			Account:   c.account,
		}, nil
	case !errors.As(err, &re) && status/100 == 2:
		return nil, &HostError{Op: op, Status: status, Message: "token answer without an access token"}
	case re == nil:
		return nil, c.transportError(ctx, rctx, op, err)
	case refreshing && re.Response.StatusCode == http.StatusBadRequest && re.ErrorCode == "invalid_grant":
		return nil, errInvalidGrant
	}

	// Any other refusal is a login failure: hold every replica back for the period the host
	// announces, or a minute, so retries do not lengthen Badgr's backoff.
	block := defaultLoginBlock
	var throttle struct {
		Expires json.RawMessage `json:"expires"` // Badgr's login backoff period in seconds
	}
	if json.Unmarshal(re.Body, &throttle) == nil {
		if secs, ok := parseExpires(throttle.Expires); ok && secs > 0 {
			block = time.Duration(secs * float64(time.Second))
		}
	}
	return nil, c.blockLogin(ctx, block, loginFailureReason(grantType, re))
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// loginFailureReason describes a refused login from the OAuth error code and description only;
// the request's credentials are never echoed.
func loginFailureReason(grantType string, re *oauth2.RetrieveError) string {
	reason := fmt.Sprintf("%s grant answered %d", grantType, re.Response.StatusCode)
	if re.ErrorCode != "" {
		reason += " " + re.ErrorCode
		if re.ErrorDescription != "" {
			reason += ": " + re.ErrorDescription
		}
	} else {
		reason += " " + describeBody(re.Response.StatusCode, re.Response.Header.Get("Content-Type"), re.Body, nil)
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
