package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/badgebridge/bridge/internal/ledger"
)

// TypeBulk is the task of a bulk run: the rows of one badge class waiting in its bulk set,
// reconciled in batches (reconcile.Reconciler.RunBulk).
const TypeBulk = "bulk"

// BulkMin is how many due rows of one badge class a sweep must find, with no job queued for
// them, to hand them to a bulk run rather than queue a job for each: from about this many, one
// batch award and a shared look-up cost fewer host requests than two requests per row.
const BulkMin = 20

type bulkPayload struct {
	BadgeClass string `json:"badge_class"`
}

// bulkTaskID is the one id a bulk run of a class is queued under: asynq refuses a second task
// with an id that is queued or running, so a class has at most one run at a time.
func bulkTaskID(badgeClass string) string { return "bulk:" + badgeClass }

// BulkRun is how long a bulk run takes new batches. The run's class listing is taken once and
// used for every batch, so a bounded run keeps it from growing old and gives other classes their
// turn; what is left waits for the next run, which the sweeper queues.
const BulkRun = 5 * time.Minute

// bulkTimeout is a bulk run's deadline in asynq: the run takes no batch that could outlast it
// (reconcile.Reconciler.RunBulk stops a row lease before it), and a job's timeout is above a
// lease.
func (e *Enqueuer) bulkTimeout() time.Duration { return BulkRun + e.timeout }

// EnqueueBulk makes sure a bulk run of badgeClass is queued or running.
func (e *Enqueuer) EnqueueBulk(ctx context.Context, badgeClass string) error {
	return e.enqueueBulk(ctx, badgeClass, bulkTaskID(badgeClass))
}

func (e *Enqueuer) enqueueBulk(ctx context.Context, badgeClass, id string) error {
	b, _ := json.Marshal(bulkPayload{BadgeClass: badgeClass})
	_, err := e.client.EnqueueContext(ctx, asynq.NewTask(TypeBulk, b),
		asynq.Queue(Queue), asynq.TaskID(id), asynq.MaxRetry(0), asynq.Timeout(e.bulkTimeout()))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("queue bulk run of %s: %w", badgeClass, err)
	}
	return nil
}

// BulkEnqueuer is the Enqueuer of the intake for backfill and re-evaluation: it hands every row
// to its class's bulk run instead of queueing a job per row.
type BulkEnqueuer struct{ e *Enqueuer }

// NewBulkEnqueuer hands rows to bulk runs queued through e.
func NewBulkEnqueuer(e *Enqueuer) *BulkEnqueuer { return &BulkEnqueuer{e: e} }

// Enqueue puts the row in its class's bulk set and makes sure a run of the class is queued.
func (b *BulkEnqueuer) Enqueue(ctx context.Context, k ledger.RowKey) error { return b.e.toBulk(ctx, k) }

// toBulk puts the row in its class's bulk set and makes sure a run of the class is queued, at
// most once a second per class: a run takes every row added while it runs, and the sweeper
// queues one for rows added after it ended.
func (e *Enqueuer) toBulk(ctx context.Context, k ledger.RowKey) error {
	if err := e.ledger.AddBulk(ctx, k); err != nil {
		return err
	}
	if !e.bursts.runDue(k.BadgeClass, time.Now()) {
		return nil
	}
	return e.EnqueueBulk(ctx, k.BadgeClass)
}

// burstWindow is the window in which BulkMin rows of one class make a burst.
const burstWindow = time.Second

// maxTrackedClasses bounds the burst tracker; classes come from the mapping, so this is only a
// guard against a mapping of thousands of classes growing it for ever.
const maxTrackedClasses = 10000

// bursts counts, per badge class, the rows this process queued in the current window, and when
// it last made sure of the class's bulk run.
type bursts struct {
	mu      sync.Mutex
	classes map[string]*burst
}

type burst struct {
	start  time.Time
	n      int
	runDue time.Time // no EnqueueBulk for the class before this
}

func (b *bursts) get(class string, now time.Time) *burst {
	if b.classes == nil || len(b.classes) > maxTrackedClasses {
		b.classes = map[string]*burst{}
	}
	c, ok := b.classes[class]
	if !ok {
		c = &burst{start: now}
		b.classes[class] = c
	}
	return c
}

// add counts a row of class and reports whether the class is in a burst.
func (b *bursts) add(class string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.get(class, now)
	if now.Sub(c.start) >= burstWindow {
		c.start, c.n = now, 0
	}
	c.n++
	return c.n >= BulkMin
}

// runDue reports whether the class's bulk run should be made sure of now, and if so, not again
// for a second.
func (b *bursts) runDue(class string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.get(class, now)
	if now.Before(c.runDue) {
		return false
	}
	c.runDue = now.Add(time.Second)
	return true
}

// ensureBulkRuns queues a run for every class with rows waiting whose run is not queued or
// running: the run ended just before the rows came, or asynq lost or archived it.
func (s *Sweeper) ensureBulkRuns(ctx context.Context) error {
	classes, err := s.Ledger.BulkClasses(ctx)
	if err != nil {
		return err
	}
	for _, class := range classes {
		state, err := taskState(s.Inspector, bulkTaskID(class))
		if err != nil {
			return fmt.Errorf("look up bulk run of %s: %w", class, err)
		}
		switch state {
		case taskGone:
			err = s.Enqueuer.EnqueueBulk(ctx, class)
		case taskActive:
			// Active in asynq while no run holds the class's lease: the run ended but asynq's
			// "done" mark was lost (a Redis failover), or its worker died. asynq's recoverer
			// frees the id only a minute or two later, so a run goes in under an id of its own;
			// the lease keeps it from overlapping a run that is just starting.
			var running bool
			if running, err = s.Ledger.BulkRunning(ctx, class); err == nil && !running {
				err = s.Enqueuer.enqueueBulk(ctx, class, bulkTaskID(class)+":"+strconv.FormatInt(time.Now().UnixNano(), 36))
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// routeBulk takes out of keys the rows that go to bulk runs: rows already waiting in a bulk set,
// and, when a class has at least BulkMin due rows with no job queued, all of those. ids are the
// rows' job slots. It returns the rows (and slots) left for a job each.
func (s *Sweeper) routeBulk(ctx context.Context, keys []ledger.RowKey, ids []string) ([]ledger.RowKey, []string, error) {
	waiting, err := s.Ledger.InBulk(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	free := map[string]int{}
	for i, k := range keys {
		if ids[i] == "" && !waiting[i] {
			free[k.BadgeClass]++
		}
	}
	var add []ledger.RowKey
	runs := map[string]bool{}
	var restKeys []ledger.RowKey
	var restIDs []string
	for i, k := range keys {
		switch {
		case waiting[i]:
			runs[k.BadgeClass] = true
		case ids[i] == "" && free[k.BadgeClass] >= BulkMin:
			add = append(add, k)
			runs[k.BadgeClass] = true
		default:
			restKeys = append(restKeys, k)
			restIDs = append(restIDs, ids[i])
		}
	}
	if err := s.Ledger.AddBulk(ctx, add...); err != nil {
		return nil, nil, err
	}
	for class := range runs {
		if err := s.Enqueuer.EnqueueBulk(ctx, class); err != nil {
			return nil, nil, err
		}
	}
	s.Metrics.routedBulk(len(add))
	return restKeys, restIDs, nil
}
