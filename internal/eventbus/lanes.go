package eventbus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/edx"
)

// job is one entry of a read batch on its way through the lanes.
type job struct {
	stream      string
	msg         redis.XMessage
	redelivered bool // read from a pending list, so it may carry a failure count

	// Set by prepare, before the entry is given to a lane: its lane depends on the learner.
	fields map[string]string
	ev     edx.Event
	err    error // of decoding

	done bool // finished (recorded, skipped or dead-lettered): to be acknowledged
}

// learner is the LMS user id the job's event is about (the decoder accepts positive ids only),
// 0 when it cannot be known: a trimmed, unsupported or undecodable entry, never handed to the
// intake.
func (j *job) learner() int64 {
	if j.msg.Values == nil || j.err != nil {
		return 0
	}
	return j.ev.UserID
}

// batch is what the lanes of one read batch share.
type batch struct {
	// stop is set when the bridge's Redis fails or Run is stopping: the entries not started yet
	// would fail the same way, so they stay pending for the next read, after the backoff.
	stop atomic.Bool
	// intakeFailed and recorded decide, once the lanes are done, whether the intake counts as
	// working again: a lane recording one learner's event while another lane's intake call
	// fails must not end the outage, or every retry of a failing entry would log it anew.
	intakeFailed atomic.Bool
	recorded     atomic.Bool
	// counted is set by the first intake failure of the batch that counts towards its entry's
	// dead-lettering; the others stay pending uncounted.
	counted atomic.Bool
}

func (b *batch) stopped(ctx context.Context) bool { return ctx.Err() != nil || b.stop.Load() }

// handleBatch finishes the jobs of one read and marks those to acknowledge. Each learner's
// entries go through one lane in stream order, while other learners' entries run on the other
// lanes: the intake spends an entry mostly waiting on Redis round trips, so one entry at a
// time left the CPUs idle. An entry that is not finished keeps the learner's later entries of
// the batch pending behind it, so a learner's events never overtake one another; the other
// learners go on. It returns once every lane has: on shutdown the lanes start no further
// entry, and what they did not finish stays pending.
func (c *Consumer) handleBatch(ctx context.Context, jobs []job) {
	// Decoding is CPU work and tells the learner, so it is spread over the lanes first.
	inLanes(len(jobs), c.cfg.Lanes, func(i int) { c.prepare(&jobs[i]) })

	b := &batch{}
	groups := byLearner(jobs)
	inLanes(len(groups), c.cfg.Lanes, func(g int) {
		for _, i := range groups[g] {
			if b.stopped(ctx) {
				return
			}
			if err := c.process(ctx, b, &jobs[i]); err != nil {
				if errors.Is(err, errStopBatch) {
					b.stop.Store(true)
				}
				return
			}
			jobs[i].done = true
		}
	})
	if b.recorded.Load() && !b.intakeFailed.Load() {
		c.intakeDown.recovered(c.log)
	}
}

// prepare copies the entry's fields and decodes it. A trimmed entry (no fields) is left as is.
func (c *Consumer) prepare(j *job) {
	if j.msg.Values == nil {
		return
	}
	j.fields = make(map[string]string, len(j.msg.Values))
	for k, v := range j.msg.Values {
		if s, ok := v.(string); ok {
			j.fields[k] = s
		} else {
			j.fields[k] = fmt.Sprint(v)
		}
	}
	j.ev, j.err = c.decode(j.fields)
}

// byLearner groups the indexes of jobs by learner: stream order within a group, groups in the
// order of their first entry, so the oldest entries start first. The entries of no known
// learner share one group: they cost no round trip to the intake, they fail only when the
// bridge's Redis does (which stops the batch anyway), and one after the other their dead
// letters keep the stream's order.
func byLearner(jobs []job) [][]int {
	groups := make([][]int, 0, len(jobs))
	at := make(map[int64]int, len(jobs))
	for i := range jobs {
		l := jobs[i].learner()
		g, seen := at[l]
		if !seen {
			g = len(groups)
			at[l] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

// inLanes calls work(i) for every i in [0, n) on at most lanes goroutines, each taking the
// next i when it is free (a slow learner does not hold up the indexes behind it), and returns
// when all calls have returned.
func inLanes(n, lanes int, work func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, max(lanes, 1)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				work(i)
			}
		})
	}
	wg.Wait()
}
