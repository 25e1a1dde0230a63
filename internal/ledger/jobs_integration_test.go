package ledger

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

// A row holds at most one waiting job; only that job's id empties the slot.
func TestJobSlotHoldsOneJob(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	k := RowKey{"Class1", 42}
	if _, err := apply(ctx, l, intake(42, "alice@example.com", edx.SignalSupports, 100, "rule")); err != nil {
		t.Fatal(err)
	}
	claimed, cur, err := l.ClaimJob(ctx, k, "job-1")
	if err != nil || !claimed || cur != "job-1" {
		t.Fatalf("first claim: claimed=%v current=%q err=%v", claimed, cur, err)
	}
	claimed, cur, err = l.ClaimJob(ctx, k, "job-2")
	if err != nil || claimed || cur != "job-1" {
		t.Fatalf("second claim while job-1 waits: claimed=%v current=%q err=%v, want job-1 kept", claimed, cur, err)
	}
	if ok, err := l.ReleaseJob(ctx, k, "job-2"); err != nil || ok {
		t.Fatalf("release by a job that does not hold the slot: %v %v", ok, err)
	}
	if id, _ := l.QueuedJob(ctx, k); id != "job-1" {
		t.Fatalf("slot %q after a foreign release, want job-1", id)
	}
	if ok, err := l.ReleaseJob(ctx, k, "job-1"); err != nil || !ok {
		t.Fatalf("release by the holder: %v %v", ok, err)
	}
	ids, err := l.QueuedJobs(ctx, []RowKey{k, {"Class1", 43}})
	if err != nil || len(ids) != 2 || ids[0] != "" || ids[1] != "" {
		t.Fatalf("slots after release: %q %v", ids, err)
	}
	if claimed, _, err := l.ClaimJob(ctx, k, "job-3"); err != nil || !claimed {
		t.Fatalf("claim after release: %v %v", claimed, err)
	}
	ids, _ = l.QueuedJobs(ctx, []RowKey{{"Class1", 43}, k})
	if ids[0] != "" || ids[1] != "job-3" {
		t.Fatalf("batched read %q, want [\"\" job-3]", ids)
	}
}

// A slot is never written for a row that does not exist: that would bring an erased row back.
func TestJobSlotNeverCreatesARow(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	k := RowKey{"Class1", 7}
	if _, _, err := l.ClaimJob(ctx, k, "job-1"); !errors.Is(err, ErrRowGone) {
		t.Fatalf("claim on a missing row: %v, want ErrRowGone", err)
	}
	if n, _ := l.rdb.Exists(ctx, l.rowKey(k)).Result(); n != 0 {
		t.Fatal("claiming a missing row's slot created the row")
	}
	if ok, err := l.ReleaseJob(ctx, k, "job-1"); err != nil || ok {
		t.Fatalf("release on a missing row: %v %v", ok, err)
	}
	if n, _ := l.rdb.Exists(ctx, l.rowKey(k)).Result(); n != 0 {
		t.Fatal("releasing a missing row's slot created the row")
	}
}

// A starting job empties its slot and takes the lock in one step; the sweeper's idle claim
// refuses while a job runs, an intake's claim does not (a change after the job read the row
// needs a new job).
func TestStartJobEmptiesTheSlotWithTheLock(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	k := RowKey{"Class1", 42}
	if _, err := apply(ctx, l, intake(42, "alice@example.com", edx.SignalSupports, 100, "rule")); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := l.ClaimJob(ctx, k, "job-1"); err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	token, ok, err := l.StartJob(ctx, k, "job-1", time.Minute)
	if err != nil || !ok || token == "" {
		t.Fatalf("start: token=%q ok=%v err=%v", token, ok, err)
	}
	if id, _ := l.QueuedJob(ctx, k); id != "" {
		t.Fatalf("slot %q after the job started, want empty", id)
	}
	if ok, err := l.ClaimIdleJob(ctx, k, "sweep-1"); err != nil || ok {
		t.Fatalf("idle claim while a job runs: %v %v, want refused", ok, err)
	}
	if ok, _, err := l.ClaimJob(ctx, k, "job-2"); err != nil || !ok {
		t.Fatalf("intake claim while a job runs: %v %v, want taken", ok, err)
	}
	// A second job finds the row busy: its slot is emptied all the same.
	if _, ok, err := l.StartJob(ctx, k, "job-2", time.Minute); err != nil || ok {
		t.Fatalf("second start while locked: ok=%v err=%v, want busy", ok, err)
	}
	if id, _ := l.QueuedJob(ctx, k); id != "" {
		t.Fatalf("slot %q after a busy start, want empty", id)
	}
	if err := l.Unlock(ctx, k, token); err != nil {
		t.Fatal(err)
	}
	if err := l.Renew(ctx, k, token, time.Minute); !errors.Is(err, ErrLockLost) {
		t.Fatalf("the job's token after unlock: %v", err)
	}
	if ok, err := l.ClaimIdleJob(ctx, k, "sweep-2"); err != nil || !ok {
		t.Fatalf("idle claim on an owed row with no job waiting or running: %v %v", ok, err)
	}

	// Once a job has settled the row, the sweeper queues nothing for it.
	token, ok, err = l.StartJob(ctx, k, "sweep-2", time.Minute)
	if err != nil || !ok {
		t.Fatalf("start: %v %v", ok, err)
	}
	r, err := l.Read(ctx, k)
	if err != nil || r == nil {
		t.Fatalf("read: %v", err)
	}
	if _, err := l.Finish(ctx, k, token, r.Version, time.Time{}, Fields{"state": StateIssued}); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx, k, token); err != nil {
		t.Fatal(err)
	}
	if ok, err := l.ClaimIdleJob(ctx, k, "sweep-3"); err != nil || ok {
		t.Fatalf("idle claim on a settled row: %v %v, want refused", ok, err)
	}
	if ok, _, err := l.ClaimJob(ctx, k, "job-4"); err != nil || !ok {
		t.Fatalf("intake claim on a settled row: %v %v, want taken", ok, err)
	}
}
