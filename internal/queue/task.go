// Package queue moves work from intake to the badge host: it records events in the ledger,
// queues asynq reconcile jobs, runs the workers that make the host match the ledger, and sweeps
// rows whose reconcile is owed but not queued.
package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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

// Enqueuer queues reconcile jobs.
type Enqueuer struct {
	client  *asynq.Client
	timeout time.Duration
}

// NewEnqueuer queues on client; timeout is a job's run limit (above the row lease).
func NewEnqueuer(client *asynq.Client, timeout time.Duration) *Enqueuer {
	return &Enqueuer{client: client, timeout: timeout}
}

// Enqueue queues a reconcile job for the row under a fresh id. Ids are never reused and jobs
// carry no decision, so a queued, running or archived job never swallows a later change: the
// job reads the row when it runs, and the ledger's owed mark outlives any job.
func (e *Enqueuer) Enqueue(ctx context.Context, k ledger.RowKey) error {
	b, _ := json.Marshal(reconcilePayload{BadgeClass: k.BadgeClass, UserID: k.UserID})
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	id := "rc:" + k.String() + ":" + strconv.FormatInt(time.Now().UnixMilli(), 10) + "-" + hex.EncodeToString(nonce[:])
	_, err := e.client.EnqueueContext(ctx, asynq.NewTask(TypeReconcile, b),
		asynq.Queue(Queue), asynq.TaskID(id), asynq.MaxRetry(0), asynq.Timeout(e.timeout))
	if err != nil {
		return fmt.Errorf("queue reconcile of %s: %w", k, err)
	}
	return nil
}

func parsePayload(t *asynq.Task) (ledger.RowKey, error) {
	var p reconcilePayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.BadgeClass == "" || p.UserID == 0 {
		return ledger.RowKey{}, fmt.Errorf("reconcile payload %q: want badge_class and user_id", t.Payload())
	}
	return ledger.RowKey{BadgeClass: p.BadgeClass, UserID: p.UserID}, nil
}
