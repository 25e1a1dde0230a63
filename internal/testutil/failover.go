package testutil

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// This file holds what the failover suites (test/sentinel, test/cluster) share: a paced stream
// of events, a webhook sender that resends as a real one does, and the tables and summaries
// their reports are made of. What each suite checks stays in the suite.

// Answer is one webhook request's outcome.
type Answer struct {
	Code       int    // 0: transport error
	Status     string // intake status of a 200: accepted, duplicate…
	Message    string // the bridge's reason, for the log of refusals
	Sent, Done time.Time
}

// OK reports whether the bridge answered 200: it took the event.
func (a Answer) OK() bool { return a.Code == http.StatusOK }

// SignFunc signs a Standard Webhooks request: pass webhook.Sign. It is an argument rather than
// an import because packages below webhook (intake, ledger…) use testutil in their own tests,
// and importing webhook here would make those tests an import cycle.
type SignFunc func(key []byte, id, timestamp string, body []byte) string

// SenderOptions configures a WebhookSender.
type SenderOptions struct {
	Key        []byte        // the webhook secret's raw bytes (the part after whsec_, decoded)
	Sign       SignFunc      // webhook.Sign
	InFlight   int           // requests in flight at once
	Timeout    time.Duration // per request; above the bridge's own intake bound
	RetryEvery time.Duration // the pause before a resend
}

// WebhookSender posts signed Standard Webhooks requests to one URL with a bounded number in
// flight, so that a failover which slows the bridge's answers cannot pile up unbounded
// connections.
type WebhookSender struct {
	url    string
	opt    SenderOptions
	client *http.Client
	slots  chan struct{}
}

// NewWebhookSender returns a sender to url; its idle connections are closed when the test ends.
func NewWebhookSender(t testing.TB, url string, opt SenderOptions) *WebhookSender {
	s := &WebhookSender{url: url, opt: opt, slots: make(chan struct{}, opt.InFlight),
		client: &http.Client{Timeout: opt.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: opt.InFlight}}}
	t.Cleanup(s.client.CloseIdleConnections)
	return s
}

// Deliver sends one event as a real sender does: again after a 503 or a transport error, every
// RetryEvery, until it is answered 200 (or another code, which no resend would change) or
// giveUp is closed. It returns every attempt, in order.
func (s *WebhookSender) Deliver(id string, body []byte, giveUp <-chan struct{}) []Answer {
	var answers []Answer
	for {
		s.slots <- struct{}{}
		a := s.Send(id, body)
		<-s.slots
		answers = append(answers, a)
		if a.OK() || (a.Code != 0 && a.Code != http.StatusServiceUnavailable) {
			return answers
		}
		select {
		case <-giveUp:
			return answers
		case <-time.After(s.opt.RetryEvery):
		}
	}
}

// Send posts body once, signed with a fresh timestamp, and reads the intake's status and message
// from the answer.
func (s *WebhookSender) Send(id string, body []byte) Answer {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, _ := http.NewRequest(http.MethodPost, s.url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", ts)
	req.Header.Set("webhook-signature", "v1,"+s.opt.Sign(s.opt.Key, id, ts, body))
	a := Answer{Sent: time.Now()}
	resp, err := s.client.Do(req)
	if err == nil {
		var out struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		a.Code, a.Status, a.Message = resp.StatusCode, out.Status, out.Message
	}
	a.Done = time.Now()
	return a
}

// Stream paces new events at a steady rate and delivers each in its own goroutine, so that slow
// answers and resends during a failover do not slow the stream down: the bridge sees load go on
// as it would from real senders.
type Stream struct {
	rate       int
	stop, done chan struct{}
	giveUp     chan struct{} // closed when resends are to end
	stopOnce   func()
	endResends func()
	deliveries sync.WaitGroup
}

// NewStream returns a stream of rate events per second; Start runs it.
func NewStream(rate int) *Stream {
	s := &Stream{rate: rate, stop: make(chan struct{}), done: make(chan struct{}), giveUp: make(chan struct{})}
	s.stopOnce = sync.OnceFunc(func() { close(s.stop) })
	s.endResends = sync.OnceFunc(func() { close(s.giveUp) })
	return s
}

// Start calls next every 1/rate seconds with the event's index and the tick's time, until next
// returns false or Stop is called. next may call Deliver. When the test ends the stream stops and
// resends end, so that a failed step leaves no sender running.
func (s *Stream) Start(t testing.TB, next func(i int, now time.Time) bool) {
	t.Cleanup(s.endResends)
	t.Cleanup(s.stopOnce)
	go func() {
		defer close(s.done)
		tick := time.NewTicker(time.Second / time.Duration(s.rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-s.stop:
				return
			case now := <-tick.C:
				if !next(i, now) {
					return
				}
			}
		}
	}()
}

// Deliver runs send in its own goroutine. send resends until it is answered or giveUp is closed
// (see Drain).
func (s *Stream) Deliver(send func(giveUp <-chan struct{})) {
	s.deliveries.Add(1)
	go func() {
		defer s.deliveries.Done()
		send(s.giveUp)
	}()
}

// Stop ends the stream and waits until its last event is handed out.
func (s *Stream) Stop() {
	s.stopOnce()
	<-s.done
}

// Done is closed once the stream has ended, on Stop or when next returned false.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Drain lets the deliveries go on resending for at most resendFor, then closes giveUp, and
// waits for them all: resends are bounded, and whatever is not answered 200 by then is for the
// caller to report. Call it once the stream is done.
func (s *Stream) Drain(resendFor time.Duration) {
	time.AfterFunc(resendFor, s.endResends)
	s.deliveries.Wait()
}

// Span is the stretch from the first to the last of some moments, such as the 503s of a run: it
// shows when a failover made the bridge refuse, and for how long.
type Span struct{ First, Last time.Time }

// Add widens the span to take in at.
func (s *Span) Add(at time.Time) {
	if s.First.IsZero() || at.Before(s.First) {
		s.First = at
	}
	if at.After(s.Last) {
		s.Last = at
	}
}

// From tells the span in seconds from ref (the kill, the failover), or "none" when it is empty.
func (s Span) From(ref time.Time) string {
	if s.First.IsZero() {
		return "none"
	}
	return fmt.Sprintf("%+.1fs to %+.1fs", s.First.Sub(ref).Seconds(), s.Last.Sub(ref).Seconds())
}

// Timeline is a table of counts per second from a moment (the kill, the failover): the webhook
// answers 200 / 503 / transport error, and the caller's own columns. It shows how the bridge's
// answers and the host's awards moved around the failover, which one total cannot.
type Timeline struct {
	from    time.Time
	columns []string // after 200, 503 and error
	rows    map[int][]int
}

// NewTimeline starts a timeline from from with the answer columns and then columns.
func NewTimeline(from time.Time, columns ...string) *Timeline {
	return &Timeline{from: from, columns: columns, rows: map[int][]int{}}
}

const answerColumns = 3 // 200, 503, error

func (tl *Timeline) row(at time.Time) []int {
	s := int(at.Sub(tl.from).Seconds())
	if at.Before(tl.from) {
		s--
	}
	if tl.rows[s] == nil {
		tl.rows[s] = make([]int, answerColumns+len(tl.columns))
	}
	return tl.rows[s]
}

// Answers counts each answer, resends included, in the second it was answered.
func (tl *Timeline) Answers(as []Answer) {
	for _, a := range as {
		r := tl.row(a.Done)
		switch {
		case a.OK():
			r[0]++
		case a.Code == http.StatusServiceUnavailable:
			r[1]++
		case a.Code == 0:
			r[2]++
		}
	}
}

// Count adds one to column in the second at falls in. column must be one NewTimeline was given.
func (tl *Timeline) Count(column string, at time.Time) {
	for i, c := range tl.columns {
		if c == column {
			tl.row(at)[answerColumns+i]++
			return
		}
	}
	panic(fmt.Sprintf("testutil: timeline has no column %q", column))
}

// String is the timeline as a Markdown table, a row per second that saw anything.
func (tl *Timeline) String() string {
	var secs []int
	for s := range tl.rows {
		secs = append(secs, s)
	}
	sort.Ints(secs)
	var b strings.Builder
	b.WriteString("| s | 200 | 503 | error |")
	for _, c := range tl.columns {
		b.WriteString(" " + c + " |")
	}
	b.WriteString("\n")
	for _, s := range secs {
		fmt.Fprintf(&b, "| %+d |", s)
		for _, n := range tl.rows[s] {
			fmt.Fprintf(&b, " %d |", n)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// LogSummary counts the bridge's JSON log lines by level and message, not their fields, which
// name learners: a run's log stays short enough to read and free of personal data.
func LogSummary(stderr string) string {
	counts := map[string]int{}
	for _, line := range strings.Split(stderr, "\n") {
		var l struct{ Level, Msg string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg != "" {
			counts[l.Level+" "+l.Msg]++
		}
	}
	var keys []string
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%5d × %s\n", counts[k], k)
	}
	return b.String()
}

// PublishReport prints a run's report and logs it; when the environment variable envVar names a
// file, it writes the report there too: go test hides a passing package's output, so CI asks for
// the table in a file to print it.
func PublishReport(t testing.TB, envVar, report string) {
	t.Helper()
	fmt.Print(report)
	t.Log(report)
	if file := os.Getenv(envVar); file != "" {
		if err := os.WriteFile(file, []byte(report), 0o644); err != nil {
			t.Errorf("write report to $%s: %v", envVar, err)
		}
	}
}

// maxProblems bounds how many problems LogProblems shows one by one.
const maxProblems = 30

// LogProblems logs the first problems one a line, then how many more there are: a run that goes
// badly wrong would otherwise bury the report under thousands of lines.
func LogProblems(t testing.TB, problems []string) {
	t.Helper()
	for i, p := range problems {
		if i == maxProblems {
			t.Logf("… and %d more", len(problems)-maxProblems)
			break
		}
		t.Log(p)
	}
}
