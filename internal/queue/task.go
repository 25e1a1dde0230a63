// Package queue moves work from intake to the badge host: it records events in the ledger,
// queues asynq reconcile jobs, runs the workers that make the host match the ledger, and sweeps
// rows whose reconcile is owed but not queued.
package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/badgebridge/bridge/internal/ledger"
)

// Task type and queue of reconcile jobs.
const (
	TypeReconcile = "reconcile"
	Queue         = "reconcile"
)

type reconcilePayload struct {
	BadgeClass string `json:"badge_class"`
	UserID     int64  `json:"user_id"`
}

// Enqueuer queues reconcile jobs, at most one waiting per row (the ledger's job slot).
type Enqueuer struct {
	client  *asynq.Client
	ledger  *ledger.Ledger
	timeout time.Duration
	bursts  bursts
	// Bursts hands rows in a burst to bulk runs (Enqueue); on by default.
	Bursts bool
}

// NewEnqueuer queues on client, keeping each row's waiting job in l; timeout is a job's run
// limit (above the row lease).
func NewEnqueuer(client *asynq.Client, l *ledger.Ledger, timeout time.Duration) *Enqueuer {
	return &Enqueuer{client: client, ledger: l, timeout: timeout, Bursts: true}
}

// Enqueue makes sure one reconcile job is waiting for the row. When one already is, nothing is
// queued: jobs carry no decision and read the row when they run, so the waiting one also does
// this change. Otherwise a job goes in under a fresh id (ids are never reused, so an archived
// or finished job never swallows a later change). An erased row needs no job.
//
// In a burst (BulkMin rows of one badge class queued by this process within a second) the row
// goes to its class's bulk run instead: a course team issuing a class's certificates at once
// gets batch awards, not two host requests per learner.
func (e *Enqueuer) Enqueue(ctx context.Context, k ledger.RowKey) error {
	if e.Bursts && e.bursts.add(k.BadgeClass, time.Now()) {
		return e.toBulk(ctx, k)
	}
	_, err := e.ensure(ctx, k, false)
	return err
}

// ensure is Enqueue reporting whether it queued a job. With idle it queues only when no job
// runs on the row either (the sweeper's case: a running job settles the owed mark itself).
func (e *Enqueuer) ensure(ctx context.Context, k ledger.RowKey, idle bool) (queued bool, err error) {
	id := newJobID(k)
	var claimed bool
	if idle {
		claimed, err = e.ledger.ClaimIdleJob(ctx, k, id)
	} else {
		claimed, _, err = e.ledger.ClaimJob(ctx, k, id)
	}
	if errors.Is(err, ledger.ErrRowGone) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("queue reconcile of %s: %w", k, err)
	}
	if !claimed {
		return false, nil
	}
	if err := e.enqueue(ctx, k, id); err != nil {
		// Free the slot, or no job would be queued for the row until the sweeper found this
		// id missing. A fresh context: the caller's may be what failed.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, rerr := e.ledger.ReleaseJob(rctx, k, id); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return false, err
	}
	return true, nil
}

func (e *Enqueuer) enqueue(ctx context.Context, k ledger.RowKey, id string) error {
	b, _ := json.Marshal(reconcilePayload{BadgeClass: k.BadgeClass, UserID: k.UserID})
	_, err := e.client.EnqueueContext(ctx, asynq.NewTask(TypeReconcile, b),
		asynq.Queue(Queue), asynq.TaskID(id), asynq.MaxRetry(0), asynq.Timeout(e.timeout))
	if err != nil {
		return fmt.Errorf("queue reconcile of %s: %w", k, err)
	}
	return nil
}

// newJobID names a job by its row (user id, never e-mail), time and a nonce.
func newJobID(k ledger.RowKey) string {
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	return "rc:" + k.String() + ":" + strconv.FormatInt(time.Now().UnixMilli(), 10) + "-" + hex.EncodeToString(nonce[:])
}

func parsePayload(t *asynq.Task) (ledger.RowKey, error) {
	var p reconcilePayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.BadgeClass == "" || p.UserID == 0 {
		return ledger.RowKey{}, fmt.Errorf("reconcile payload %q: want badge_class and user_id", t.Payload())
	}
	return ledger.RowKey{BadgeClass: p.BadgeClass, UserID: p.UserID}, nil
}
