package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/badgebridge/bridge/internal/backoff"
	"github.com/badgebridge/bridge/internal/sandbox"
)

// Request kinds the fake host counts.
const (
	kindToken  = "token"
	kindLookup = "look-up"
	// kindListing is a whole-class listing (no recipient parameter): what a bulk run takes once
	// instead of recipient look-ups per batch.
	kindListing = "class listing"
	kindAward   = "award"
	kindBatch   = "batch award"
	kindRevoke  = "revoke"
	kindOther   = "other"
)

// fakeHost is the development sandbox behind a network-like front: every request waits the
// configured latency, then a token bucket decides whether the host answers or throttles with
// 429 and Retry-After, as a rate-limited Canvas Credentials or proxied Badgr would. It counts
// requests by kind and records when each single award was answered 201, by recipient.
type fakeHost struct {
	sb      *sandbox.Host
	class   string
	srv     *http.Server
	url     string
	user    string
	pass    string
	started time.Time

	mu        sync.Mutex
	latency   time.Duration
	rate      float64 // tokens per second; 0 = no limit
	burst     float64
	tokens    float64
	refilled  time.Time
	counts    map[string]int
	throttled []time.Duration // when each 429 was sent, since started
	awarded   map[string]time.Time
	// firstAward and lastAward are when the first and latest successful award request
	// (single or batch) was answered; answered counts those requests, so that waitAwards
	// copies the sandbox's assertions only when they can have changed.
	firstAward time.Time
	lastAward  time.Time
	answered   int
	watch      map[string]chan time.Time
}

// hostOptions configures a fakeHost.
type hostOptions struct {
	Class   string
	Latency time.Duration
	Rate    float64 // requests per second the host accepts; 0 = unlimited
	Burst   float64 // bucket size; default one second's worth (at least 1)
}

func startFakeHost(o hostOptions) (*fakeHost, error) {
	h := &fakeHost{
		class: o.Class, user: "bench", pass: "bench-password-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		latency: o.Latency, rate: o.Rate, burst: o.Burst,
		counts: map[string]int{}, awarded: map[string]time.Time{}, watch: map[string]chan time.Time{},
	}
	if h.burst <= 0 {
		h.burst = math.Max(1, o.Rate)
	}
	h.tokens, h.refilled, h.started = h.burst, time.Now(), time.Now()
	h.sb = sandbox.New(sandbox.Options{Username: h.user, Password: h.pass, BadgeClasses: []string{o.Class}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fake badge host listener: %w", err)
	}
	h.url = "http://" + ln.Addr().String()
	h.sb.SetBaseURL(h.url)
	h.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = h.srv.Serve(ln) }()
	return h, nil
}

func (h *fakeHost) close() { _ = h.srv.Close() }

// resetCounts zeroes the counters and award times and restarts the "first second" of the 429
// count.
func (h *fakeHost) resetCounts() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts, h.throttled, h.started = map[string]int{}, nil, time.Now()
	h.firstAward, h.lastAward = time.Time{}, time.Time{}
}

// snapshot returns the request counts and the 429s sent more than grace after the start.
func (h *fakeHost) snapshot(grace time.Duration) (counts map[string]int, late429 int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	counts = make(map[string]int, len(h.counts))
	for k, v := range h.counts {
		counts[k] = v
	}
	for _, at := range h.throttled {
		if at > grace {
			late429++
		}
	}
	return counts, late429
}

// throttledCount is how many 429s the host sent since the counts were reset.
func (h *fakeHost) throttledCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.throttled)
}

// awardCount is how many assertions the host holds for the benchmark's badge class.
func (h *fakeHost) awardCount() int { return len(h.sb.Assertions(h.class)) }

// lastAwardAt is when the latest successful award request (single or batch) was answered.
func (h *fakeHost) lastAwardAt() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastAward
}

// firstAwardAt is when the first successful award request since the reset was answered.
func (h *fakeHost) firstAwardAt() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.firstAward
}

// watchAward returns a channel that receives the time recipient's award is answered 201.
func (h *fakeHost) watchAward(recipient string) <-chan time.Time {
	ch := make(chan time.Time, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if at, ok := h.awarded[recipient]; ok {
		ch <- at
		return ch
	}
	h.watch[recipient] = ch
	return ch
}

func requestKind(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/o/token"):
		return kindToken
	case r.Method == http.MethodGet && strings.HasSuffix(p, "/assertions") && !r.URL.Query().Has("recipient"):
		return kindListing
	case r.Method == http.MethodGet && strings.HasSuffix(p, "/assertions"):
		return kindLookup
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/assertions"):
		return kindAward
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/issue"):
		return kindBatch
	case r.Method == http.MethodDelete || strings.HasSuffix(p, "/revoke"):
		return kindRevoke
	}
	return kindOther
}

// ServeHTTP waits the latency, applies the rate limit and hands the request to the sandbox.
func (h *fakeHost) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind := requestKind(r)
	h.mu.Lock()
	h.counts[kind]++
	latency := h.latency
	h.mu.Unlock()
	if latency > 0 && !backoff.Sleep(r.Context(), latency) {
		return // the client gave up
	}
	if wait, ok := h.take(); !ok {
		h.throttle(w, wait)
		return
	}
	var recipient string
	if kind == kindAward {
		recipient = awardRecipient(r)
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	h.sb.ServeHTTP(rec, r)
	if (kind == kindAward || kind == kindBatch) && rec.status/100 == 2 {
		h.awardDone(recipient, time.Now())
	}
}

// take spends one token of the bucket; without one it says how long until the next.
func (h *fakeHost) take() (time.Duration, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rate <= 0 {
		return 0, true
	}
	now := time.Now()
	h.tokens = math.Min(h.burst, h.tokens+now.Sub(h.refilled).Seconds()*h.rate)
	h.refilled = now
	if h.tokens >= 1 {
		h.tokens--
		return 0, true
	}
	h.throttled = append(h.throttled, now.Sub(h.started))
	return time.Duration((1 - h.tokens) / h.rate * float64(time.Second)), false
}

// throttle answers 429 in Badgr's envelope with Retry-After in whole seconds, rounded up.
func (h *fakeHost) throttle(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Max(1, math.Ceil(wait.Seconds()))), 10))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte(`{"status":{"success":false,"description":"miscellaneous error"},"result":[],` +
		`"fieldErrors":"Request was throttled.","validationErrors":[]}`))
}

func (h *fakeHost) awardDone(recipient string, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.answered++
	if at.After(h.lastAward) {
		h.lastAward = at
	}
	if h.firstAward.IsZero() || at.Before(h.firstAward) {
		h.firstAward = at
	}
	if recipient == "" {
		return
	}
	if _, seen := h.awarded[recipient]; !seen {
		h.awarded[recipient] = at
	}
	if ch, ok := h.watch[recipient]; ok {
		ch <- at
		delete(h.watch, recipient)
	}
}

// awardRecipient reads the recipient identity of a single award body and puts the body back.
func awardRecipient(r *http.Request) string {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return ""
	}
	var award struct {
		Recipient struct {
			Identity string `json:"identity"`
		} `json:"recipient"`
	}
	if json.Unmarshal(body, &award) != nil {
		return ""
	}
	return strings.ToLower(award.Recipient.Identity)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// waitAwards polls until the host holds want assertions or ctx ends; it returns the count seen.
// Batch awards count: it counts the sandbox's assertions, not requests.
func (h *fakeHost) waitAwards(ctx context.Context, want int) (int, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	n, seen := 0, -1
	for {
		// Copying a backfill's 100,000 assertions every tick would cost this process (whose
		// CPU and RSS are measured) more than the bridge: count only after a new award answer.
		h.mu.Lock()
		answered := h.answered
		h.mu.Unlock()
		if answered != seen {
			seen, n = answered, h.awardCount()
		}
		if n >= want {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return n, fmt.Errorf("%d of %d awards made: %w", n, want, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// errTimeout is the cause of a phase that ran out of its time budget.
var errTimeout = errors.New("phase time budget spent")
