// Package badgr talks to a Badgr-compatible badge host (Badgr server, Canvas Credentials,
// Parchment Digital Badges) through its v2 issuing API: *Client implements badgehost.Host.
//
// Every replica of the bridge shares, through Redis, one OAuth token (refreshed under a lock, as
// Badgr rotates refresh tokens), one request rate limit, the pause a 429 asks for, and the login
// block that follows a refused login (for the refused credentials only). Nothing this package
// logs or returns contains a token, a password, a client secret or an e-mail address.
package badgr

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/badgr/wire"
)

// Config configures a Client. Only BaseURL and the credentials are required.
type Config struct {
	BaseURL            string // e.g. https://api.badgr.io; a trailing slash is ignored
	Username, Password string // password grant when Username != ""
	ClientID           string // default "public" (Badgr's default OAuth application)
	ClientSecret       string
	Scope              string        // default "rw:issuer"
	Timeout            time.Duration // one HTTP call; default 15s
	RateLimit          int           // requests/second to the host, shared by all replicas through Redis; 0 = unlimited
	KeyPrefix          string        // Redis key prefix, default "bb:"; the client tags its keys "{badgr}" itself (one Cluster slot), so no hash tag here

	// Transport carries the HTTP requests; nil means a clone of http.DefaultTransport.
	Transport http.RoundTripper
}

// Client calls the badge host. It is safe for concurrent use; several Clients (in one or many
// processes) configured alike and sharing a Redis cooperate as described in the package comment.
type Client struct {
	cfg            Config
	rdb            redis.UniversalClient
	log            *slog.Logger
	http           *http.Client
	transport      http.RoundTripper // under http, for the token requests' own clients
	base           *url.URL
	keys           keys
	account        string
	intervalMicros int64
	lockTTL        time.Duration
	lockMargin     time.Duration
}

type keys struct {
	token, tokenLock                      string
	legacyToken                           string // where versions before the hash tag kept the token
	pause, rate                           string
	blocked, blockedReason, blockedLogged string
}

const userAgent = "badge-bridge"

// maxBody bounds an answer read into memory: a page of 500 assertions is well under 2 MiB.
const maxBody = 16 << 20

// New returns a Client. A nil logger discards. The configuration is not validated beyond
// defaults; a bad BaseURL surfaces as an error on the first call.
func New(cfg Config, rdb redis.UniversalClient, log *slog.Logger) *Client {
	cfg.BaseURL = strings.TrimRight(strings.TrimSpace(cfg.BaseURL), "/")
	if cfg.ClientID == "" {
		cfg.ClientID = "public"
	}
	if cfg.Scope == "" {
		cfg.Scope = "rw:issuer"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = "bb:"
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	transport := cfg.Transport
	if transport == nil {
		transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || base.Host == "" {
		base = nil
	}
	// One hash tag for every key of the client: its scripts touch several at once (the rate
	// limiter reads the login block, the pause and the schedule), which Redis Cluster allows only
	// within one hash slot.
	p := cfg.KeyPrefix + "{badgr}:"
	creds := credentialsFingerprint(cfg)
	return &Client{
		cfg: cfg,
		rdb: rdb,
		log: log,
		http: &http.Client{
			Transport: transport,
			// A redirect would turn a POST into a GET and may leave the host; report it instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		transport: transport,
		base:      base,
		keys: keys{
			token:       p + "token",
			legacyToken: cfg.KeyPrefix + "badgr:token",
			tokenLock:   p + "token:lock",
			pause:       p + "pause",
			rate:        p + "ratelimit",
			// A login block belongs to the credentials that were refused: keyed by their
			// fingerprint, it stops every replica using them, while corrected credentials (a
			// fixed password rolled out) are tried at once instead of waiting out the old block.
			blocked:       p + "login_blocked_until:" + creds,
			blockedReason: p + "login_blocked_reason:" + creds,
			blockedLogged: p + "login_blocked_logged:" + creds + ":",
		},
		account:        accountFingerprint(cfg),
		intervalMicros: intervalMicros(cfg.RateLimit),
		// A renewal may take a rate-limit wait, a refresh and a fallback login.
		lockTTL:    2*cfg.Timeout + 15*time.Second,
		lockMargin: 5 * time.Second,
	}
}

// apiRequest is one issuing-API call.
type apiRequest struct {
	op      string
	method  string
	url     string // absolute
	body    any    // JSON-encoded when not nil
	headers map[string]string
	timeout time.Duration // of this request; 0: the configured BRIDGE_BADGR_TIMEOUT
}

// apiResponse is the host's answer.
type apiResponse struct {
	status      int
	header      http.Header
	contentType string
	body        []byte
	env         *wire.Envelope // nil when the body is not an envelope
}

// hostError builds the HostError for an answer the caller does not accept.
func (r *apiResponse) hostError(op string) *HostError {
	e := &HostError{Op: op, Status: r.status, Message: describeBody(r.status, r.contentType, r.body, r.env)}
	if ra, ok := parseRetryAfter(r.header.Get("Retry-After"), time.Now()); ok {
		e.RetryAfter = ra
	}
	return e
}

// result decodes the envelope's result list into out.
func (r *apiResponse) result(op string, out any) error {
	if r.env == nil || len(r.env.Result) == 0 {
		return &HostError{Op: op, Status: r.status, Message: "unexpected answer: " + describeBody(r.status, r.contentType, r.body, nil)}
	}
	if err := json.Unmarshal(r.env.Result, out); err != nil {
		return &HostError{Op: op, Status: r.status, Message: "unexpected answer: result: " + cleanMessage(err.Error())}
	}
	return nil
}

// do sends an API request with the shared token, renewing it once after a 401, and handles the
// answers common to every call (429 pauses all replicas). Any other status is for the caller.
func (c *Client) do(ctx context.Context, r apiRequest) (*apiResponse, error) {
	if c.base == nil {
		return nil, fmt.Errorf("badgr %s: invalid base URL", r.op)
	}
	var body []byte
	if r.body != nil {
		var err error
		if body, err = json.Marshal(r.body); err != nil {
			return nil, fmt.Errorf("badgr %s: encode request: %w", r.op, err)
		}
	}
	tok, err := c.accessToken(ctx)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		resp, err := c.send(ctx, r, body, tok.Access)
		if err != nil {
			return nil, err
		}
		switch {
		case resp.status == http.StatusUnauthorized && attempt == 0:
			// Expired, revoked, or replaced by another replica's refresh: renew once and repeat.
			c.log.Info("badgr: access token refused; renewing", "op", r.op)
			if tok, err = c.renew(ctx, tok); err != nil {
				return nil, err
			}
			continue
		case resp.status == http.StatusTooManyRequests:
			he := resp.hostError(r.op)
			if _, given := parseRetryAfter(resp.header.Get("Retry-After"), time.Now()); !given {
				he.RetryAfter = defaultPause
			}
			c.pause(ctx, he.RetryAfter)
			c.log.Warn("badgr: the host answered 429; pausing every replica", "op", r.op, "retry_after", he.RetryAfter.String())
			return nil, he
		}
		return resp, nil
	}
}

const (
	// defaultPause applies after a 429 without Retry-After.
	defaultPause = 5 * time.Second
	// maxPause bounds a Retry-After so one misconfigured answer cannot stop the bridge for days.
	maxPause = time.Hour
)

// send performs one HTTP exchange after waiting for the rate limiter.
func (c *Client) send(ctx context.Context, r apiRequest, body []byte, access string) (*apiResponse, error) {
	if err := c.wait(ctx, r.op); err != nil {
		return nil, err
	}
	timeout := c.cfg.Timeout
	if r.timeout > 0 {
		timeout = r.timeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(rctx, r.method, r.url, rd)
	if err != nil {
		// The URL may hold recipients' e-mails: never echo it.
		return nil, fmt.Errorf("badgr %s: build request: invalid URL", r.op)
	}
	req.Header.Set("Accept", wire.MediaJSON)
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Authorization", "Bearer "+access)
	if body != nil {
		req.Header.Set("Content-Type", wire.MediaJSON)
	}
	for k, v := range r.headers {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, rctx, r.op, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, c.transportError(ctx, rctx, r.op, err)
	}
	c.log.Debug("badgr: request", "op", r.op, "method", r.method, "status", resp.StatusCode, "duration_ms", time.Since(start).Milliseconds())
	out := &apiResponse{status: resp.StatusCode, header: resp.Header, contentType: resp.Header.Get("Content-Type"), body: raw}
	// Badgr answers application/ld+json or application/json; error pages may be anything, so
	// try the envelope whatever the type and keep it only when it has the envelope's shape.
	out.env = wire.ParseEnvelope(raw)
	return out, nil
}

// transportError turns a failed exchange into a HostError without the request URL (it may carry
// e-mails). callCtx is the per-call context: when it ran out, the call timed out. When the
// caller's own context ended, that is reported instead: the caller gave up.
func (c *Client) transportError(ctx, callCtx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("badgr %s: %w", op, ctx.Err())
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if callCtx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &HostError{Op: op, Timeout: true, Message: "no answer within " + c.cfg.Timeout.String()}
	}
	return &HostError{Op: op, Message: cleanMessage(err.Error())}
}

// parseRetryAfter reads Retry-After as delta-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(secs) && !math.IsInf(secs, 0) {
		secs = min(max(secs, 0), maxPause.Seconds())
		return time.Duration(secs * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// apiURL joins the base URL and escaped path segments.
func (c *Client) apiURL(segments ...string) string {
	var b strings.Builder
	b.WriteString(c.cfg.BaseURL)
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

var _ badgehost.Host = (*Client)(nil)
