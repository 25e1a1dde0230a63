package reconcile

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/ledger"
)

// Waits the host imposes (rate limits, login backoff) never spend a row's retry budget; real
// failures do, until the row is parked; permanent refusals park at once.
func TestFailureClassification(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	r := &Reconciler{MaxRetry: 3, Settle: time.Minute}
	row := func(retries int) *ledger.Row {
		return &ledger.Row{Key: ledger.RowKey{BadgeClass: "C", UserID: 1}, Retries: retries}
	}
	cases := []struct {
		name      string
		err       error
		retries   int
		wantState string
		counts    bool
		minWait   time.Duration
	}{
		{"429 with Retry-After", &badgehost.WaitError{Until: now.Add(30 * time.Second), Reason: "badge host rate limit", Err: errors.New("429")}, 2, "", false, 30 * time.Second},
		{"login blocked", fmt.Errorf("list: %w", &badgehost.WaitError{Until: now.Add(time.Hour), Reason: "badge host login blocked: throttled", Err: errors.New("blocked")}), 3, "", false, time.Hour},
		{"500 counts", hostErr{msg: "500"}, 0, "", true, 8 * time.Second},
		{"503 honours Retry-After", hostErr{"503", 10 * time.Minute}, 0, "", true, 10 * time.Minute},
		{"timeout counts", hostErr{msg: "timeout"}, 1, "", true, 16 * time.Second},
		{"out of retries", hostErr{msg: "502"}, 3, ledger.StateFailed, true, 0},
		{"permanent 400", &badgehost.PermanentError{Reason: "award: bad request: You may not award this badge to this recipient.", Err: errors.New("400")}, 0, ledger.StateFailed, false, 0},
		{"permanent 404", &badgehost.PermanentError{Reason: "list: entity not found", Err: errors.New("404")}, 0, ledger.StateFailed, false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := ledger.Fields{}
			out, err := r.failed(context.Background(), row(c.retries), f, "list", c.err, now)
			if err != nil {
				t.Fatal(err)
			}
			_, counted := f["retries"]
			if counted != c.counts {
				t.Fatalf("retry counted = %v, want %v (fields %v)", counted, c.counts, f)
			}
			if got, _ := f["state"].(string); got != c.wantState {
				t.Fatalf("state %q, want %q (reason %v)", got, c.wantState, f["reason"])
			}
			if c.wantState == ledger.StateFailed {
				if !out.next.IsZero() {
					t.Fatal("a parked row must not be scheduled again")
				}
				if f["reason"] == "" {
					t.Fatal("parked without the host's reason")
				}
				return
			}
			if wait := out.next.Sub(now); wait < c.minWait {
				t.Fatalf("next try after %s, want at least %s", wait, c.minWait)
			}
		})
	}
	if _, err := r.failed(canceled(), row(0), ledger.Fields{}, "list", errors.New("x"), now); err == nil {
		t.Fatal("a shutdown (cancelled context) must not be recorded as the row's failure")
	}
}

// hostErr is a retryable host failure, with the host's Retry-After when it gave one.
type hostErr struct {
	msg        string
	retryAfter time.Duration
}

func (e hostErr) Error() string             { return e.msg }
func (e hostErr) RetryAfter() time.Duration { return e.retryAfter }

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
