package backfill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
	"github.com/badgebridge/bridge/internal/ledger"
)

func TestClassify(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name string
		row  *ledger.Row
		v0   int64
		want string
	}{
		{"erased", nil, 3, rowUnchanged},
		{"not reconciled yet", &ledger.Row{Version: 3, SyncedVersion: 2, State: ledger.StatePending}, 3, rowPending},
		{"an old parking, not yet seen again", &ledger.Row{Version: 3, SyncedVersion: 2, State: ledger.StateFailed}, 3, rowPending},
		{"issued", &ledger.Row{Version: 3, SyncedVersion: 3, State: ledger.StateIssued}, 3, rowIssued},
		{"issued, verification due later", &ledger.Row{Version: 3, SyncedVersion: 3, State: ledger.StateIssued, NextCheck: now}, 3, rowIssued},
		{"issued, newer events since", &ledger.Row{Version: 5, SyncedVersion: 4, State: ledger.StateIssued}, 3, rowIssued},
		{"award outcome unknown", &ledger.Row{Version: 3, SyncedVersion: 3, State: ledger.StatePending, AttemptAt: now, Reason: "award: timeout"}, 3, rowPending},
		{"retrying", &ledger.Row{Version: 3, SyncedVersion: 3, State: ledger.StatePending, Reason: "list: 502"}, 3, rowPending},
		{"issued, revoking a duplicate is retried", &ledger.Row{Version: 3, SyncedVersion: 3, State: ledger.StateIssued, Reason: "revoke duplicate: 502"}, 3, rowPending},
		{"parked", &ledger.Row{Version: 3, SyncedVersion: 3, State: ledger.StateFailed, Reason: "badge class not found"}, 3, rowFailed},
		{"revoked", &ledger.Row{Version: 3, SyncedVersion: 3, State: ledger.StateRevoked}, 3, rowRevoked},
		{"not held, nothing sent", &ledger.Row{Version: 3, SyncedVersion: 3, State: ledger.StateNone}, 3, rowUnchanged},
		{"already expired", &ledger.Row{Version: 3, SyncedVersion: 3, State: ledger.StateExpired, Reason: "would already be expired"}, 3, rowUnchanged},
	}
	for _, c := range cases {
		if got := classify(c.row, c.v0); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// fakeRows plays a ledger whose rows move on by one step each read.
type fakeRows struct {
	mu    sync.Mutex
	reads int
	steps map[ledger.RowKey][]*ledger.Row // the row at each read; the last one stays
	err   error
}

func (f *fakeRows) ReadMany(_ context.Context, keys []ledger.RowKey) ([]*ledger.Row, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	f.reads++
	out := make([]*ledger.Row, len(keys))
	for i, k := range keys {
		s := f.steps[k]
		if len(s) == 0 {
			continue
		}
		out[i] = s[0]
		if len(s) > 1 {
			f.steps[k] = s[1:]
		}
	}
	return out, nil
}

func row(version, synced int64, state, reason string) *ledger.Row {
	return &ledger.Row{Version: version, SyncedVersion: synced, State: state, Reason: reason}
}

func TestWaitFollowsRowsToTheEnd(t *testing.T) {
	k := func(uid int64) ledger.RowKey { return ledger.RowKey{BadgeClass: "C", UserID: uid} }
	f := &fakeRows{steps: map[ledger.RowKey][]*ledger.Row{
		k(1): {row(2, 1, "pending", ""), row(2, 2, "issued", "")},
		k(2): {row(2, 1, "pending", ""), row(2, 1, "pending", ""), row(2, 2, "pending", "list: 502"), row(2, 2, "issued", "")},
		k(3): {row(2, 1, "pending", ""), row(2, 2, "failed", "refused")},
		k(4): {row(2, 2, "none", "")},
		// k(5) was erased before the wait
	}}
	var out, bar bytes.Buffer
	sum, err := Wait(context.Background(), WaitOptions{Ledger: f, Rows: []ledger.RowKey{k(1), k(2), k(3), k(4), k(5)}, Out: &out, Progress: &bar, Poll: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Issued != 2 || sum.Failed != 1 || sum.Unchanged != 2 || sum.Pending != 0 || sum.Rows != 5 || sum.Done() {
		t.Fatalf("summary %+v", sum)
	}
	if f.reads != 4 {
		t.Errorf("%d reads, want 4 (until the last row settled)", f.reads)
	}
	if s := out.String(); !strings.Contains(s, "5 rows: 2 issued, 1 failed (the host's reasons: GET /v1/failures") || !strings.Contains(s, "2 unchanged") || strings.Contains(s, "pending") {
		t.Errorf("report: %q", s)
	}
	if !strings.Contains(bar.String(), "5/5 rows settled") {
		t.Errorf("bar: %q", bar.String())
	}
}

func TestWaitTimeout(t *testing.T) {
	k := ledger.RowKey{BadgeClass: "C", UserID: 1}
	f := &fakeRows{steps: map[ledger.RowKey][]*ledger.Row{k: {row(2, 1, "pending", "")}}}
	var out bytes.Buffer
	start := time.Now()
	sum, err := Wait(context.Background(), WaitOptions{Ledger: f, Rows: []ledger.RowKey{k}, Out: &out, Timeout: 50 * time.Millisecond, Poll: 10 * time.Millisecond})
	if err != nil || sum.Pending != 1 || sum.Done() {
		t.Fatalf("%+v %v", sum, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("waited %s past a 50ms timeout", d)
	}
	if s := out.String(); !strings.Contains(s, "1 still pending after --timeout 50ms: the workers go on") {
		t.Errorf("report: %q", s)
	}
}

func TestWaitInterruptedAndUnreadable(t *testing.T) {
	k := ledger.RowKey{BadgeClass: "C", UserID: 1}
	f := &fakeRows{steps: map[ledger.RowKey][]*ledger.Row{k: {row(2, 1, "pending", "")}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	sum, err := Wait(ctx, WaitOptions{Ledger: f, Rows: []ledger.RowKey{k}, Out: &out, Poll: 5 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) || sum.Pending != 1 {
		t.Fatalf("%+v %v", sum, err)
	}
	f.err = errors.New("connection refused")
	out.Reset()
	sum, err = Wait(context.Background(), WaitOptions{Ledger: f, Rows: []ledger.RowKey{k}, Out: &out})
	if err == nil || sum.Pending != 1 || !strings.Contains(out.String(), "connection refused") {
		t.Fatalf("%+v %v %q", sum, err, out.String())
	}
}

type jobsHandler struct{}

func (jobsHandler) Handle(_ context.Context, ev edx.Event, _ string) (intake.Result, error) {
	if ev.UserID == 3 {
		return intake.Result{Status: intake.StatusDuplicate}, nil
	}
	return intake.Result{Status: intake.StatusAccepted, Jobs: []string{fmt.Sprintf("DemoBadge-1:%d", ev.UserID)}}, nil
}

// Run hands the rows of each accepted event to Queued, for --wait.
func TestRunReportsQueuedRows(t *testing.T) {
	var got []string
	csv := "user_id,email,course_key,mode,issued_on\n" +
		"1,a@example.org," + demoCourse + ",honor,2024-01-01\n" +
		"2,b@example.org," + demoCourse + ",honor,2024-01-01\n" +
		"3,c@example.org," + demoCourse + ",honor,2024-01-01\n"
	_, _, err := run(t, "f.csv", csv, Options{Apply: true, Handler: jobsHandler{}, Mapping: parseMapping(t),
		Queued: func(rows []string) { got = append(got, rows...) }})
	if err != nil || strings.Join(got, " ") != "DemoBadge-1:1 DemoBadge-1:2" {
		t.Fatalf("queued %v, %v", got, err)
	}
}
