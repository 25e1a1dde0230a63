package eventbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
)

// laneHandler stands in for the intake in the lane tests: it keeps, per learner, the order in
// which it recorded events, and notes how many calls ran at once and whether two calls of one
// learner ever did.
type laneHandler struct {
	before func(ctx context.Context, ev edx.Event) error // runs first; an error is the intake's

	mu          sync.Mutex
	calls       map[string]int
	inFlight    map[int64]int // calls in progress, per learner
	running     int
	peak        int  // most calls in progress at once
	sameLearner bool // two calls of one learner were in progress at once
	order       map[int64][]string
}

func newLaneHandler(before func(context.Context, edx.Event) error) *laneHandler {
	return &laneHandler{before: before, calls: map[string]int{}, inFlight: map[int64]int{}, order: map[int64][]string{}}
}

func (h *laneHandler) Handle(ctx context.Context, ev edx.Event, _ string) (intake.Result, error) {
	h.mu.Lock()
	h.calls[ev.ID]++
	h.inFlight[ev.UserID]++
	h.sameLearner = h.sameLearner || h.inFlight[ev.UserID] > 1
	h.running++
	h.peak = max(h.peak, h.running)
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.inFlight[ev.UserID]--
		h.running--
		h.mu.Unlock()
	}()
	if h.before != nil {
		if err := h.before(ctx, ev); err != nil {
			return intake.Result{}, err
		}
	}
	h.mu.Lock()
	h.order[ev.UserID] = append(h.order[ev.UserID], ev.ID)
	h.mu.Unlock()
	return intake.Result{Status: intake.StatusAccepted}, nil
}

func (h *laneHandler) recordedOf(uid int64) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.order[uid])
}

func (h *laneHandler) recorded() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, ids := range h.order {
		n += len(ids)
	}
	return n
}

func (h *laneHandler) callsFor(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[id]
}

// learnerEntry is a certificate-created entry of the learner uid.
func learnerEntry(t *testing.T, id string, uid int64) entry {
	t.Helper()
	p := payload(t, "certificate-created.json")
	p["certificate"].(map[string]any)["user"].(map[string]any)["id"] = uid
	data, err := edx.EncodeAvro(edx.TypeCertificateCreated, p)
	if err != nil {
		t.Fatal(err)
	}
	return entry{eventType: edx.TypeCertificateCreated, id: id, data: data}
}

// pendingIDs lists the entry ids of stream pending with the group, in stream order.
func pendingIDs(t *testing.T, c redis.UniversalClient, stream string) []string {
	t.Helper()
	p, err := c.XPendingExt(context.Background(), &redis.XPendingExtArgs{
		Stream: stream, Group: testGroup, Start: "-", End: "+", Count: 100,
	}).Result()
	if err != nil {
		t.Fatalf("XPENDING %s: %v", stream, err)
	}
	ids := make([]string, 0, len(p))
	for _, e := range p {
		ids = append(ids, e.ID)
	}
	return ids
}

// Entries of different learners in one batch are handled at the same time, each learner's in
// stream order and one after the other. The first event of every learner waits until the
// first events of all learners are in the intake together, so without lanes the calls never
// meet; each call lasts a while, so two calls of one learner handed in together would overlap.
func TestLanesOverlapLearnersAndKeepTheirOrder(t *testing.T) {
	bus, own, _, _ := redisPair(t)
	const learners, perLearner = 3, 3
	firsts := map[string]bool{}
	var entries []entry
	for n := range perLearner {
		for l := range learners {
			id := eventID(100*(l+1) + n)
			if n == 0 {
				firsts[id] = true
			}
			entries = append(entries, learnerEntry(t, id, int64(l+1)))
		}
	}
	allFirsts := make(chan struct{})
	var arrived atomic.Int32
	h := newLaneHandler(func(ctx context.Context, ev edx.Event) error {
		if firsts[ev.ID] {
			if arrived.Add(1) == learners {
				close(allFirsts)
			}
			select {
			case <-allFirsts:
			case <-time.After(2 * time.Second): // the test fails on the peak below
			case <-ctx.Done():
			}
		}
		time.Sleep(20 * time.Millisecond)
		return nil
	})
	produce(t, bus, certStream, entries...)
	cfg := testConfig("web-1", certStream)
	cfg.Start, cfg.Count = StartOldest, 2*len(entries) // one batch
	start(t, bus, own, h, cfg)

	eventually(t, "all recorded", func() bool { return h.recorded() == len(entries) })
	eventually(t, "all acknowledged", func() bool { return pendingCount(t, bus, certStream) == 0 })
	h.mu.Lock()
	peak, same := h.peak, h.sameLearner
	h.mu.Unlock()
	if peak != learners {
		t.Errorf("at most %d calls ran at once, want %d (one per learner)", peak, learners)
	}
	if same {
		t.Error("two events of one learner were handled at the same time")
	}
	for l := range learners {
		want := []string{eventID(100 * (l + 1)), eventID(100*(l+1) + 1), eventID(100*(l+1) + 2)}
		if got := h.recordedOf(int64(l + 1)); !slices.Equal(got, want) {
			t.Errorf("learner %d recorded in order %v, want %v", l+1, got, want)
		}
	}
}

// An entry the intake fails on stays pending, and so does its learner's next entry behind
// it, while the other learners' entries of the batch are recorded and acknowledged. Once the
// intake takes it, the learner's entries are recorded in stream order. With one lane the other
// learners start only after the failure, so a failure that stopped the batch would show.
func TestFailingEntryDoesNotHoldUpOtherLearners(t *testing.T) {
	for _, lanes := range []int{1, DefaultLanes} {
		t.Run(fmt.Sprintf("%d lanes", lanes), func(t *testing.T) { testFailingEntry(t, lanes) })
	}
}

func testFailingEntry(t *testing.T, lanes int) {
	bus, own, _, _ := redisPair(t)
	var failing atomic.Bool
	failing.Store(true)
	rejected := errors.New("ledger: row script refused the fact")
	h := newLaneHandler(func(_ context.Context, ev edx.Event) error {
		if ev.ID == eventID(1) && failing.Load() {
			return rejected
		}
		return nil
	})
	ids := produce(t, bus, certStream,
		learnerEntry(t, eventID(1), 1), // fails
		learnerEntry(t, eventID(2), 2),
		learnerEntry(t, eventID(3), 1), // waits behind eventID(1)
		learnerEntry(t, eventID(4), 3))
	cfg := testConfig("web-1", certStream)
	cfg.Start, cfg.Lanes = StartOldest, lanes
	c := start(t, bus, own, h, cfg)
	eventually(t, "group created", func() bool { return groupExists(bus, certStream) })

	eventually(t, "other learners recorded and acknowledged, the failed learner's entries pending", func() bool {
		return slices.Equal(pendingIDs(t, bus, certStream), []string{ids[0], ids[2]})
	})
	if got := h.recordedOf(2); !slices.Equal(got, []string{eventID(2)}) {
		t.Errorf("learner 2 recorded %v", got)
	}
	if got := h.recordedOf(3); !slices.Equal(got, []string{eventID(4)}) {
		t.Errorf("learner 3 recorded %v", got)
	}
	if n := h.callsFor(eventID(3)); n != 0 {
		t.Errorf("the entry behind the failing one was handed in %d times while it failed", n)
	}
	if got := c.outcomes(t, certStream, outcomeFailed); got < 1 {
		t.Errorf("failed = %v, want the failure counted", got)
	}
	if v, err := own.HGet(context.Background(), c.failuresKey(certStream), ids[0]).Result(); err != nil || v == "" {
		t.Errorf("failure count of the failing entry: %q, %v", v, err)
	}

	failing.Store(false)
	eventuallyWithin(t, slowWait, "the failed learner's entries recorded", func() bool { return len(h.recordedOf(1)) == 2 })
	eventually(t, "all acknowledged", func() bool { return pendingCount(t, bus, certStream) == 0 })
	if got, want := h.recordedOf(1), []string{eventID(1), eventID(3)}; !slices.Equal(got, want) {
		t.Errorf("learner 1 recorded in order %v, want %v", got, want)
	}
	if dead := deadLetters(t, own, certStream); len(dead) != 0 {
		t.Errorf("%d dead letters, want none", len(dead))
	}
}

// Stopping in the middle of a batch waits for the lanes and starts no further entry: the
// entries finished before or while stopping are acknowledged, those not started stay pending,
// uncounted, and the next run records them.
func TestShutdownMidBatchLeavesTheRestPending(t *testing.T) {
	bus, own, _, _ := redisPair(t)
	blocked := make(chan string, 8)
	h := newLaneHandler(func(ctx context.Context, ev edx.Event) error {
		if ev.UserID == 1 {
			return nil
		}
		blocked <- ev.ID
		// The intake may well finish what it began when the consumer is told to stop.
		<-ctx.Done()
		return nil
	})
	var entries []entry
	for l := int64(1); l <= 5; l++ {
		entries = append(entries, learnerEntry(t, eventID(int(l)), l))
	}
	ids := produce(t, bus, certStream, entries...)
	cfg := testConfig("web-1", certStream)
	cfg.Start, cfg.Lanes = StartOldest, 2
	c := start(t, bus, own, h, cfg)

	// With two lanes, the second call to block comes after the first learner was recorded.
	for range cfg.Lanes {
		select {
		case <-blocked:
		case <-time.After(waitTimeout):
			t.Fatal("the lanes did not both block")
		}
	}
	c.stop()
	h.mu.Lock()
	running := h.running
	h.mu.Unlock()
	if running != 0 {
		t.Fatalf("Run returned with %d intake calls still running", running)
	}
	if n := h.callsFor(eventID(4)) + h.callsFor(eventID(5)); n != 0 {
		t.Errorf("%d entries started after the shutdown began", n)
	}
	if n := h.recorded(); n != 3 {
		t.Errorf("%d recorded before the shutdown, want 3", n)
	}
	if got := pendingIDs(t, bus, certStream); !slices.Equal(got, ids[3:]) {
		t.Errorf("pending %v, want %v", got, ids[3:])
	}
	if got := c.outcomes(t, certStream, outcomeFailed); got != 0 {
		t.Errorf("failed = %v: the shutdown counted as an intake failure", got)
	}

	next := newLaneHandler(nil)
	start(t, bus, own, next, testConfig("web-1", certStream))
	eventually(t, "the rest recorded by the next run", func() bool { return next.recorded() == 2 })
	eventually(t, "all acknowledged", func() bool { return pendingCount(t, bus, certStream) == 0 })
	for i := 1; i <= 3; i++ {
		if n := next.callsFor(eventID(i)); n != 0 {
			t.Errorf("entry %d, finished before the shutdown, was handed in again %d times", i, n)
		}
	}
}

// byLearner keeps stream order within a learner and orders learners by their first entry;
// the entries of no known learner form one group.
func TestByLearner(t *testing.T) {
	ev := func(uid int64) job {
		return job{msg: redis.XMessage{Values: map[string]any{}}, ev: edx.Event{UserID: uid}}
	}
	undecodable := job{msg: redis.XMessage{Values: map[string]any{}}, ev: edx.Event{UserID: 7}, err: edx.ErrUndecodable}
	trimmed := job{}
	jobs := []job{ev(7), ev(8), undecodable, ev(7), trimmed, ev(0), ev(8), ev(9)}
	got := byLearner(jobs)
	want := [][]int{{0, 3}, {1, 6}, {2, 4, 5}, {7}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("byLearner = %v, want %v", got, want)
	}
}

// An intake that fails every entry while the bridge's Redis answers (a full Redis, say) counts
// one failure per batch, as when a failure stopped the batch: the entries of a batch are not
// brought to the dead-letter stream together.
func TestOneCountedFailurePerBatch(t *testing.T) {
	bus, own, _, _ := redisPair(t)
	h := newLaneHandler(func(context.Context, edx.Event) error { return errors.New("OOM command not allowed") })
	produce(t, bus, certStream,
		learnerEntry(t, eventID(1), 1), learnerEntry(t, eventID(2), 2),
		learnerEntry(t, eventID(3), 3), learnerEntry(t, eventID(4), 4))
	msgs, err := bus.XRange(context.Background(), certStream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	log, _ := newTestLogger(t)
	c := New(bus, own, h, testConfig("web-1", certStream), log, prometheus.NewRegistry())
	jobs := make([]job, len(msgs))
	for i, m := range msgs {
		jobs[i] = job{stream: certStream, msg: m}
	}
	c.handleBatch(context.Background(), jobs)
	for _, j := range jobs {
		if j.done {
			t.Fatalf("entry %s finished although the intake failed", j.msg.ID)
		}
	}
	if n := h.calls[eventID(1)] + h.calls[eventID(2)] + h.calls[eventID(3)] + h.calls[eventID(4)]; n != 4 {
		t.Fatalf("%d intake calls, want every learner tried once", n)
	}
	counts := own.HGetAll(context.Background(), c.failuresKey(certStream)).Val()
	if len(counts) != 1 {
		t.Fatalf("failure counts %v, want exactly one entry counted", counts)
	}
}
