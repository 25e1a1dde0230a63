// Package sandbox is an in-process fake of a Badgr v2 badge host, for development mode and for
// tests that need a host to award on. It speaks the wire format of internal/badgr/wire and knows
// nothing of the client.
package sandbox

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/badgebridge/bridge/internal/backoff"
	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/badgr/wire"
)

// Host is an in-process fake of a Badgr v2 host, faithful to the behaviour the bridge depends
// on (badgr-api.md section 13): the OAuth token endpoint with refresh rotation and login backoff,
// Bearer authentication, the envelope and content negotiation, award with Badgr's duplicate check
// (including its case caveat), cursor-paginated lists with Link headers, revoke and batch calls,
// HTML 404 for unrouted paths, and no idempotency support. It is an http.Handler; tests can also
// inject faults. Safe for concurrent use.
type Host struct {
	mux *http.ServeMux
	// now is the host's clock (SetClock).
	now func() time.Time

	mu         sync.Mutex
	opts       Options
	baseURL    string
	classes    map[string]*sbClass
	classOrder []string
	assertions map[string][]*sbAssertion // per badge class, oldest first
	// byIdentity holds per badge class and stored identity that recipient's assertions, revoked
	// ones included, oldest first: the duplicate check and recipient look-ups read it instead of
	// scanning a class that may hold 100,000 assertions. Revoking changes no index, as revoked
	// assertions stay listed (include_revoked).
	byIdentity  map[string]map[string][]*sbAssertion
	byID        map[string]*sbAssertion
	lastCreated time.Time
	access      map[string]*sbAccess
	refresh     map[string]*sbRefresh
	issued      []string // every token handed out (IssuedTokens)
	requests    map[string]int
	grants      map[string]int
	backoff     map[string]*sbBackoff

	failN          int
	failStatus     int
	failRetryAfter time.Duration
	awardDelay     time.Duration
	latency        time.Duration
	outage         bool
	throttleUntil  time.Time
	throttlePeriod time.Duration

	issuerID, userID string
}

// Options configures a Host.
type Options struct {
	Username, Password string
	ClientID           string // default "public"
	// ClientSecret, when set, is required from clients (confidential application); when empty any
	// secret is accepted.
	ClientSecret string
	BadgeClasses []string
	TokenTTL     time.Duration // default 24h
	// BaseURL builds openBadgeId links; may be set after listening with SetBaseURL. When empty the
	// links use the request's host.
	BaseURL string
}

type sbClass struct {
	id        string
	createdAt time.Time
}

type sbAssertion struct {
	entityID         string
	openBadgeID      string
	badgeClass       string
	identity         string // stored form: lowercased for e-mail
	recipientType    string
	hashed           bool
	salt             string
	createdAt        time.Time
	issuedOn         time.Time
	expires          *time.Time
	narrative        *string
	evidence         []wire.Evidence
	revoked          bool
	revocationReason string
}

// New returns a Host holding the given badge classes and no assertions.
func New(o Options) *Host {
	if o.ClientID == "" {
		o.ClientID = "public"
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = 24 * time.Hour
	}
	s := &Host{
		now:        time.Now,
		opts:       o,
		baseURL:    strings.TrimRight(o.BaseURL, "/"),
		classes:    map[string]*sbClass{},
		assertions: map[string][]*sbAssertion{},
		byIdentity: map[string]map[string][]*sbAssertion{},
		byID:       map[string]*sbAssertion{},
		access:     map[string]*sbAccess{},
		refresh:    map[string]*sbRefresh{},
		requests:   map[string]int{},
		grants:     map[string]int{},
		backoff:    map[string]*sbBackoff{},
		issuerID:   wire.NewEntityID(),
		userID:     wire.NewEntityID(),
	}
	for _, id := range o.BadgeClasses {
		s.AddBadgeClass(id)
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /o/token", s.handleToken)
	s.mux.HandleFunc("POST /o/token/", s.handleToken)
	s.mux.HandleFunc("GET /v2/issuers", s.handleIssuers)
	s.mux.HandleFunc("GET /v2/badgeclasses/{id}", s.handleBadgeClass)
	s.mux.HandleFunc("GET /v2/badgeclasses/{id}/assertions", s.handleList)
	s.mux.HandleFunc("POST /v2/badgeclasses/{id}/assertions", s.handleAward)
	s.mux.HandleFunc("POST /v2/badgeclasses/{id}/issue", s.handleBatchAward)
	s.mux.HandleFunc("GET /v2/assertions/{id}", s.handleAssertion)
	s.mux.HandleFunc("DELETE /v2/assertions/{id}", s.handleRevoke)
	s.mux.HandleFunc("POST /v2/assertions/revoke", s.handleBatchRevoke)
	s.mux.HandleFunc("GET /public/assertions/{id}", s.handlePublicAssertion)
	return s
}

// AddBadgeClass makes a badge class with this entityId exist (idempotent).
func (s *Host) AddBadgeClass(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.classes[id]; ok {
		return
	}
	s.classes[id] = &sbClass{id: id, createdAt: s.now().UTC()}
	s.classOrder = append(s.classOrder, id)
}

// SetBaseURL sets the base of openBadgeId links, e.g. once the listener's address is known.
func (s *Host) SetBaseURL(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.baseURL = strings.TrimRight(u, "/")
}

// Assertions returns every assertion of badgeClass, revoked ones included, oldest first.
func (s *Host) Assertions(badgeClass string) []badgehost.Assertion {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.assertions[badgeClass]
	out := make([]badgehost.Assertion, 0, len(list))
	for _, a := range list {
		out = append(out, a.assertion())
	}
	return out
}

// Requests returns how many requests each route received, keyed "METHOD /route-pattern" (e.g.
// "POST /v2/badgeclasses/{id}/assertions", "POST /o/token"); unrouted ones count under
// "METHOD (unrouted)". Every request that reached the sandbox counts, faults included.
func (s *Host) Requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.requests)
}

// TokenGrants returns how many token requests of each grant type the sandbox answered with a
// token (e.g. "password", "refresh_token", "client_credentials").
func (s *Host) TokenGrants() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.grants)
}

// ExpireTokens makes every access token issued so far answer 401 (refresh tokens stay valid).
func (s *Host) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.access {
		a.expires = time.Time{}
	}
}

// FailNext makes the next n issuing-API requests (/v2/…) answer status (500, 502, 503, 429…)
// with the body such a failure has; 429 comes without Retry-After, as from DRF throttling.
func (s *Host) FailNext(n int, status int) { s.FailNextWithRetryAfter(n, status, 0) }

// FailNextWithRetryAfter is FailNext with a Retry-After header (whole seconds, rounded up).
func (s *Host) FailNextWithRetryAfter(n int, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failStatus, s.failRetryAfter = n, status, retryAfter
}

// SetAwardDelay makes an award create the assertion and then wait d before answering, so a
// client that times out meanwhile sees a timeout although the assertion exists.
func (s *Host) SetAwardDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.awardDelay = d
}

// SetOutage makes every request, token and API, answer 503 while on.
func (s *Host) SetOutage(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outage = on
}

// ThrottleLogins makes /o/token answer 429 "login attempts throttled" with expires = d (whole
// seconds, rounded up) for the next d, as Badgr's login backoff does.
func (s *Host) ThrottleLogins(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttleUntil = s.now().Add(d)
	s.throttlePeriod = d
}

// SetClock replaces the host's clock, so tests can move its token expiry and login backoff
// forward without waiting.
func (s *Host) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// IssuedTokens returns every access and refresh token handed out so far, so tests can check
// that none reached a log or an error.
func (s *Host) IssuedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.issued)
}

// SetLatency makes every request wait d before it is handled.
func (s *Host) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// MaxRequestLine is the longest request line the host accepts (gunicorn's default
// limit_request_line, in front of Badgr); a longer one is answered 414.
const MaxRequestLine = 4094

// ServeHTTP implements http.Handler.
func (s *Host) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, pattern := s.mux.Handler(r)
	route := strings.TrimSuffix(pattern, "/")
	if pattern == "" {
		route = r.Method + " (unrouted)"
	}
	s.mu.Lock()
	s.requests[route]++
	latency, outage := s.latency, s.outage
	s.mu.Unlock()

	if latency > 0 && !backoff.Sleep(r.Context(), latency) {
		return // the client gave up
	}
	if outage {
		writeHTML(w, http.StatusServiceUnavailable, "503 Service Temporarily Unavailable")
		return
	}
	if len(r.Method)+len(r.URL.RequestURI())+len(" HTTP/1.1") > MaxRequestLine {
		// Badgr runs behind gunicorn, which refuses a longer request line before Django sees it.
		writeHTML(w, http.StatusRequestURITooLong, "Request Line is too large")
		return
	}
	if pattern == "" {
		// Django's error404 page, not the envelope.
		writeHTML(w, http.StatusNotFound, "Not Found")
		return
	}
	if strings.HasPrefix(r.URL.Path, "/v2/") {
		s.mu.Lock()
		fail := s.failN > 0
		status, retryAfter := s.failStatus, s.failRetryAfter
		if fail {
			s.failN--
		}
		s.mu.Unlock()
		if fail {
			s.writeFault(w, r, status, retryAfter)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// writeFault answers an injected failure the way the failing component would.
func (s *Host) writeFault(w http.ResponseWriter, r *http.Request, status int, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int64(math.Ceil(retryAfter.Seconds()))))
	}
	switch status {
	case http.StatusInternalServerError:
		// Django's plain server error page.
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		_, _ = w.Write([]byte("<h1>Server Error (500)</h1>"))
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		// A reverse proxy in front of the application.
		writeHTML(w, status, fmt.Sprintf("%d %s", status, http.StatusText(status)))
	case http.StatusTooManyRequests:
		// DRF throttling through Badgr's exception handler: the detail lands in fieldErrors.
		s.writeError(w, r, status, "miscellaneous error", "Request was throttled.", nil)
	default:
		s.writeError(w, r, status, "miscellaneous error", http.StatusText(status), nil)
	}
}

// contentType is Badgr's negotiation: JSON-LD unless the client asks for plain JSON.
func contentType(r *http.Request) string {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			if wire.MediaType(part) == wire.MediaJSON {
				return wire.MediaJSON
			}
		}
	}
	return wire.MediaJSONLD
}

func (s *Host) writeResult(w http.ResponseWriter, r *http.Request, status int, description string, result any) {
	res, err := json.Marshal(result)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, contentType(r), status, wire.Envelope{
		Status: &wire.Status{Success: true, Description: description},
		Result: res,
	})
}

// writeError answers Badgr's error envelope: an empty result, and fieldErrors and
// validationErrors always present (empty when there are none).
func (s *Host) writeError(w http.ResponseWriter, r *http.Request, status int, description string, fieldErrors any, validationErrors []string) {
	if fieldErrors == nil {
		fieldErrors = map[string]any{}
	}
	if validationErrors == nil {
		validationErrors = []string{}
	}
	fe, err := json.Marshal(fieldErrors)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	ve, _ := json.Marshal(validationErrors) // a []string always encodes
	writeJSON(w, contentType(r), status, wire.Envelope{
		Status:           &wire.Status{Success: false, Description: description},
		Result:           json.RawMessage("[]"),
		FieldErrors:      fe,
		ValidationErrors: ve,
	})
}

const (
	descNoAuth   = "no valid auth token found"
	descNotFound = "entity not found or insufficient privileges"
	descBad      = "bad request"
)

func (s *Host) writeNotFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, http.StatusNotFound, descNotFound, nil, nil)
}

func writeJSON(w http.ResponseWriter, contentType string, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeHTML(w http.ResponseWriter, status int, title string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "<!doctype html>\n<html lang=\"en\">\n<head><title>%s</title></head>\n<body><h1>%s</h1></body>\n</html>\n", title, title)
}

// requestBase is the scheme and host the client used, for links when no base URL is set.
func requestBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Host) linkBase(r *http.Request) string {
	if s.baseURL != "" {
		return s.baseURL
	}
	return requestBase(r)
}
