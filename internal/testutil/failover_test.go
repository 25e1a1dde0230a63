package testutil

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLogSummary(t *testing.T) {
	stderr := `{"level":"WARN","msg":"b","learner":"x@example.org"}
not json
{"level":"ERROR","msg":"a"}
{"level":"WARN","msg":"b"}
{"level":"INFO"}
`
	want := "    1 × ERROR a\n    2 × WARN b\n"
	if got := LogSummary(stderr); got != want {
		t.Errorf("LogSummary:\n%q\nwant\n%q", got, want)
	}
}

func TestTimeline(t *testing.T) {
	from := time.Date(2025, 1, 1, 0, 0, 10, 0, time.UTC)
	tl := NewTimeline(from, "awards")
	tl.Answers([]Answer{
		{Code: http.StatusServiceUnavailable, Done: from.Add(-300 * time.Millisecond)},
		{Code: 0, Done: from.Add(200 * time.Millisecond)},
		{Code: http.StatusOK, Done: from.Add(1500 * time.Millisecond)},
		{Code: http.StatusBadRequest, Done: from.Add(3 * time.Second)}, // a row, counted nowhere
	})
	tl.Count("awards", from.Add(1900*time.Millisecond))
	want := "| s | 200 | 503 | error | awards |\n" +
		"| -1 | 0 | 1 | 0 | 0 |\n" +
		"| +0 | 0 | 0 | 1 | 0 |\n" +
		"| +1 | 1 | 0 | 0 | 1 |\n" +
		"| +3 | 0 | 0 | 0 | 0 |\n"
	if got := tl.String(); got != want {
		t.Errorf("timeline:\n%s\nwant\n%s", got, want)
	}
}

func TestSpan(t *testing.T) {
	ref := time.Date(2025, 1, 1, 0, 0, 10, 0, time.UTC)
	var s Span
	if got := s.From(ref); got != "none" {
		t.Errorf("empty span: %q", got)
	}
	s.Add(ref.Add(2 * time.Second))
	s.Add(ref.Add(-500 * time.Millisecond))
	s.Add(ref.Add(time.Second))
	if got, want := s.From(ref), "-0.5s to +2.0s"; got != want {
		t.Errorf("span: %q, want %q", got, want)
	}
}

// The sender resends after 503 until 200, signs each attempt, and stops at once on any other code.
func TestWebhookSender(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		want := "v1,sig(k," + r.Header.Get("webhook-id") + "," + r.Header.Get("webhook-timestamp") + "," + string(body) + ")"
		if got := r.Header.Get("webhook-signature"); got != want {
			t.Errorf("signature %q, want %q", got, want)
		}
		switch r.Header.Get("webhook-id") {
		case "bad":
			w.WriteHeader(http.StatusBadRequest)
		default:
			if calls.Add(1) <= 2 {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `{"message":"ledger down"}`)
				return
			}
			_, _ = io.WriteString(w, `{"status":"accepted"}`)
		}
	}))
	defer srv.Close()
	sign := func(key []byte, id, ts string, body []byte) string {
		return "sig(" + string(key) + "," + id + "," + ts + "," + string(body) + ")"
	}
	s := NewWebhookSender(t, srv.URL, SenderOptions{Key: []byte("k"), Sign: sign, InFlight: 2,
		Timeout: 5 * time.Second, RetryEvery: time.Millisecond})

	as := s.Deliver("ev-1", []byte(`{}`), make(chan struct{}))
	if len(as) != 3 || as[0].Code != http.StatusServiceUnavailable || as[0].Message != "ledger down" ||
		!as[2].OK() || as[2].Status != "accepted" {
		t.Errorf("answers %+v: want 503, 503, 200 accepted", as)
	}
	if as := s.Deliver("bad", []byte(`{}`), make(chan struct{})); len(as) != 1 || as[0].Code != http.StatusBadRequest {
		t.Errorf("answers %+v: want one 400", as)
	}
}

// The stream hands out events in order until next says no more, and Drain ends resends after
// its bound and waits for every delivery.
func TestStream(t *testing.T) {
	st := NewStream(200)
	var (
		mu   sync.Mutex
		seen []int
	)
	st.Start(t, func(i int, now time.Time) bool {
		st.Deliver(func(giveUp <-chan struct{}) {
			<-giveUp // a sender that is never answered
			mu.Lock()
			seen = append(seen, i)
			mu.Unlock()
		})
		return i+1 < 5
	})
	<-st.Done()
	st.Drain(10 * time.Millisecond)
	if len(seen) != 5 {
		t.Errorf("deliveries ended: %v, want 5", seen)
	}
	st.Stop() // after the stream ended: returns at once
}
