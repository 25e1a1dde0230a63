// Package sentinel runs the bridge against real Redis Sentinel while the primary is killed: the
// bridge must follow the failover, answer 503 (never 200) for what it could not record, and,
// with BRIDGE_REDIS_MIN_REPLICAS=1, award every event it answered 200 exactly once.
package sentinel

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/queue"
	"github.com/badgebridge/bridge/internal/sandbox"
	"github.com/badgebridge/bridge/internal/testutil"
	"github.com/badgebridge/bridge/internal/webhook"
)

const (
	badgeClass = "SentinelClass00000001"
	course     = "course-v1:Sentinel+S101+2025"
	adminToken = "sentinel-admin-token-0123456789abcdef0123"
	hostUser   = "sentinel-svc"
	hostPass   = "sentinel-password-0123"

	retryEvery  = 500 * time.Millisecond               // a sender's pause before resending
	rate        = 30                                   // new events per second
	before      = 4 * time.Second                      // steady stream before the kill
	after       = 4 * time.Second                      // and after the old primary is back as a replica
	alone       = 2 * time.Second                      // the new primary runs without a replica this long
	inflightCap = 64                                   // requests in flight at once
	resendFor   = 30 * time.Second                     // how long resends go on after the stream
	httpTimeout = 15 * time.Second                     // above the bridge's own 10 s intake bound
	hookKey     = "sentinel-hook-key-0123456789abcdef" // 34 bytes: a whsec_ secret
)

// convergeFor bounds how long the awards may take after the last 200. Usually they take a
// second or two; but when the primary dies while a bulk run of the badge class is active, asynq
// cannot mark that run done on the new primary (its sync retries reuse a cancelled context), so
// the class waits until asynq's recoverer finds the run's lease expired (lease 30 s + 30 s
// margin, checked every minute) and the sweeper queues a new run: up to about two minutes.
var convergeFor = flag.Duration("sentinel.converge", 150*time.Second, "how long the awards may take after the last 200")

const mapping = `badges:
  - name: Sentinel
    badge_class: ` + badgeClass + `
    when:
      courses: ["course-v1:Sentinel+*"]
    narrative: "Completed {{.CourseKey}}"
`

// event is one learner's certificate. Only the goroutine delivering it touches it until the
// senders are waited for.
type event struct {
	uid     int64
	id      string
	email   string // never printed
	body    []byte
	answers []testutil.Answer // every attempt, in order
}

func (e *event) first() testutil.Answer { return e.answers[0] }
func (e *event) last() testutil.Answer  { return e.answers[len(e.answers)-1] }

func newEvent(i int, at time.Time) *event {
	uid := int64(70000 + i)
	e := &event{uid: uid, id: fmt.Sprintf("sentinel-%d", uid), email: fmt.Sprintf("sentinel.learner%d@example.org", uid)}
	body := map[string]any{
		"event_metadata": map[string]any{"id": e.id, "event_type": edx.TypeCertificateCreated,
			"time": at.UTC().Format(time.RFC3339Nano), "source": "openedx/lms/web"},
		"certificate": map[string]any{
			"user": map[string]any{"id": uid, "is_active": true, "pii": map[string]any{
				"username": fmt.Sprintf("sentinel%d", uid), "email": e.email, "name": "Sentinel Learner"}},
			"course": map[string]any{"course_key": course, "display_name": "", "start": nil, "end": nil},
			"mode":   "verified", "grade": "0.9", "download_url": "", "name": "Sentinel Learner",
			"current_status": "downloadable", "previous_status": "",
		},
	}
	e.body, _ = json.Marshal(body)
	return e
}

// TestSentinelFailover streams signed webhooks into `bridge run` on Sentinel while the primary is
// SIGKILLed, the sentinels promote the replica and the old primary comes back as its replica.
func TestSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("Sentinel failover run skipped in -short mode")
	}
	g := testutil.StartSentinelGroup(t)
	t.Logf("sentinels started as %s; primary %s", g.SentinelCommand, g.Primary(t))

	sb := sandbox.New(sandbox.Options{Username: hostUser, Password: hostPass, BadgeClasses: []string{badgeClass}})
	hostURL := testutil.ServeHost(t, sb)
	mappingFile := testutil.WriteFile(t, "mapping.yaml", mapping)
	env := []string{
		"BRIDGE_REDIS_SENTINEL_MASTER=" + g.Master, "BRIDGE_REDIS_SENTINEL_ADDRS=" + g.SentinelAddrs(),
		"BRIDGE_REDIS_MIN_REPLICAS=1", "BRIDGE_REDIS_WAIT_TIMEOUT=1s",
		"BRIDGE_BADGR_URL=" + hostURL, "BRIDGE_BADGR_USERNAME=" + hostUser, "BRIDGE_BADGR_PASSWORD=" + hostPass,
		"BRIDGE_MAPPING_FILE=" + mappingFile, "BRIDGE_ADMIN_TOKEN=" + adminToken,
		"BRIDGE_WEBHOOK_SECRETS=whsec_" + base64.StdEncoding.EncodeToString([]byte(hookKey)),
		"BRIDGE_BADGR_TIMEOUT=2s", "BRIDGE_SETTLE=3s", "BRIDGE_SHUTDOWN_GRACE=5s", "BRIDGE_BADGR_RATE_LIMIT=0",
		"BRIDGE_WORKER_CONCURRENCY=10", "BRIDGE_LOG_LEVEL=warn",
	}
	bridge := testutil.StartBridge(t, env, "run")
	s := testutil.NewWebhookSender(t, "http://"+bridge.HTTP+"/v1/webhooks/openedx", testutil.SenderOptions{
		Key: []byte(hookKey), Sign: webhook.Sign, InFlight: inflightCap, Timeout: httpTimeout, RetryEvery: retryEvery})

	// The stream: a new learner every 1/rate seconds, each delivered (and resent) by its own
	// goroutine, until it is stopped.
	var events []*event // appended by the stream only; read once it is done
	st := testutil.NewStream(rate)
	st.Start(t, func(i int, now time.Time) bool {
		e := newEvent(i, now)
		events = append(events, e)
		st.Deliver(func(giveUp <-chan struct{}) { e.answers = s.Deliver(e.id, e.body, giveUp) })
		return true
	})

	start := time.Now()
	time.Sleep(before)
	oldPrimary := g.KillPrimary(t)
	killedAt := time.Now()
	t.Logf("%5.1fs primary %s SIGKILLed", time.Since(start).Seconds(), oldPrimary)
	newPrimary, failover := g.WaitFailover(t, 30*time.Second)
	t.Logf("%5.1fs sentinels promoted %s after %s", time.Since(start).Seconds(), newPrimary, failover.Round(10*time.Millisecond))
	// An orchestrator takes a moment to bring the old primary back: meanwhile the new primary
	// has no replica and, with MIN_REPLICAS=1, nothing can be answered 200.
	time.Sleep(alone)
	restartAt := time.Now() // no replica of the new primary can acknowledge anything before this
	g.RestartOld(t, 20*time.Second)
	replicaAt := time.Now()
	t.Logf("%5.1fs old primary back as an online replica (%s after the restart began)",
		time.Since(start).Seconds(), replicaAt.Sub(restartAt).Round(10*time.Millisecond))
	time.Sleep(after)
	st.Stop()
	streamEnd := time.Now()
	// Resends go on, bounded: whatever is not answered 200 by then is reported.
	st.Drain(resendFor)
	lastAnswer := time.Now()

	// Wait for the awards: one unrevoked assertion per learner answered 200, nothing owed.
	rdb := g.Client(t)
	owed := func() int64 {
		n, err := rdb.ZCard(context.Background(), "bb:owed").Result()
		if err != nil {
			return -1
		}
		return n
	}
	byEmail := map[string]*event{}
	for _, e := range events {
		byEmail[e.email] = e
	}
	var tl tally
	convergeDeadline := time.Now().Add(*convergeFor)
	for {
		tl = count(sb.Assertions(badgeClass), events, byEmail)
		if tl.clean() && owed() == 0 {
			break
		}
		if time.Now().After(convergeDeadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	converged := time.Now()
	if !tl.clean() || owed() != 0 {
		// Where the workers stand: the class's bulk run, if one is queued or stuck.
		insp := asynq.NewInspectorFromRedisClient(rdb)
		if info, err := insp.GetTaskInfo(queue.Queue, "bulk:"+badgeClass); err == nil {
			t.Logf("not converged after %s: bulk run %s state %s, last error %q, last failed %s, %d rows owed",
				*convergeFor, info.ID, info.State, info.LastErr, info.LastFailedAt.Format(time.RFC3339), owed())
		} else {
			t.Logf("not converged after %s: bulk run: %v; %d rows owed", *convergeFor, err, owed())
		}
	}
	time.Sleep(3 * time.Second) // late duplicates would show now
	tl = count(sb.Assertions(badgeClass), events, byEmail)

	// Every event answered 200 must still be recorded on the new primary: a 200 the failover
	// lost would be gone from there.
	led := ledger.New(rdb, ledger.Options{})
	lost := 0
	for _, e := range events {
		if !e.last().OK() {
			continue
		}
		rec, err := led.SeenEvent(context.Background(), e.uid, e.id)
		if err != nil {
			t.Fatalf("read event record: %v", err)
		}
		if rec == nil {
			lost++
			tl.problems = append(tl.problems, fmt.Sprintf("learner %d: answered 200, event record gone", e.uid))
		}
	}

	// The answers.
	var firstOK, first503, firstErr, resent, resends, other, neverOK, okWithoutReplica int
	var refused testutil.Span // the 503 answers
	for _, e := range events {
		switch a := e.first(); {
		case a.OK():
			firstOK++
		case a.Code == http.StatusServiceUnavailable:
			first503++
		case a.Code == 0:
			firstErr++
		}
		if len(e.answers) > 1 {
			resent++
			resends += len(e.answers) - 1
		}
		for _, a := range e.answers {
			switch {
			case a.OK() && a.Sent.After(killedAt) && a.Done.Before(restartAt):
				// With MIN_REPLICAS=1 nothing can be answered 200 while the new primary has no
				// replica: neither a new event nor the resend of one recorded there.
				okWithoutReplica++
				tl.problems = append(tl.problems, fmt.Sprintf("learner %d: answered 200 (%s) %+.2fs after the kill, while no replica could acknowledge it",
					e.uid, a.Status, a.Done.Sub(killedAt).Seconds()))
			case a.Code == http.StatusServiceUnavailable:
				refused.Add(a.Done)
			case a.Code != 0 && !a.OK():
				other++
				tl.problems = append(tl.problems, fmt.Sprintf("learner %d: answered %d", e.uid, a.Code))
			}
		}
		if !e.last().OK() {
			neverOK++
			tl.problems = append(tl.problems, fmt.Sprintf("learner %d: never answered 200 (last %d after %d tries)", e.uid, e.last().Code, len(e.answers)))
		}
	}
	window := refused.From(killedAt)

	report := fmt.Sprintf(`
sentinel failover run: %d events at %d/s, primary SIGKILLed at %+.1fs, sentinels as %s
| events sent | 200 first try | 503 | transport errors | resent | resends | 200 without replica | awarded | duplicates | missing | lost records | failover time | 503s (from the kill) |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
| %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s | %s |
old primary restarted %s after the kill, an online replica %s later; the last event answered 200 %s after the stream ended; awards converged %s after that
`, len(events), rate, killedAt.Sub(start).Seconds(), g.SentinelCommand,
		len(events), firstOK, first503, firstErr, resent, resends, okWithoutReplica, tl.awarded, tl.duplicates, tl.missing, lost,
		failover.Round(10*time.Millisecond), window,
		restartAt.Sub(killedAt).Round(10*time.Millisecond), replicaAt.Sub(restartAt).Round(10*time.Millisecond),
		lastAnswer.Sub(streamEnd).Round(10*time.Millisecond), converged.Sub(lastAnswer).Round(10*time.Millisecond))
	testutil.PublishReport(t, "SENTINEL_REPORT", report)
	t.Log("answers and awards per second from the kill:\n" + timeline(events, sb, killedAt))
	t.Log("bridge log messages (level warn and above):\n" + testutil.LogSummary(bridge.Stderr.String()))
	testutil.LogProblems(t, tl.problems)
	if neverOK > 0 {
		t.Errorf("%d events never answered 200 within %s of the stream's end", neverOK, resendFor)
	}
	if other > 0 {
		t.Errorf("%d answers were neither 200 nor 503", other)
	}
	if okWithoutReplica > 0 {
		t.Errorf("%d answers were 200 while the new primary had no replica (BRIDGE_REDIS_MIN_REPLICAS=1)", okWithoutReplica)
	}
	if tl.missing > 0 || tl.duplicates > 0 || tl.revoked > 0 || tl.strangers > 0 || lost > 0 {
		t.Errorf("awards do not match the answers: %d missing, %d duplicates, %d revoked, %d unknown recipients, %d lost records",
			tl.missing, tl.duplicates, tl.revoked, tl.strangers, lost)
	}
	if first503+firstErr == 0 {
		t.Errorf("no event was refused during the failover: the test did not exercise it")
	}
	if o := owed(); o != 0 {
		t.Errorf("%d rows still owe a reconcile", o)
	}
	bridge.Stop(t, 30*time.Second)
}

type tally struct {
	awarded, duplicates, missing, revoked, strangers int
	problems                                         []string
}

func (t tally) clean() bool {
	return t.missing == 0 && t.duplicates == 0 && t.revoked == 0 && t.strangers == 0
}

// count compares the host's assertions with the answers: every learner answered 200 holds
// exactly one unrevoked assertion; nobody else holds one; nothing is revoked.
func count(as []badgehost.Assertion, events []*event, byEmail map[string]*event) tally {
	held := map[string]int{}
	var t tally
	for _, a := range as {
		e := byEmail[a.Recipient]
		switch {
		case e == nil:
			t.strangers++
			t.problems = append(t.problems, "an assertion for a recipient the test never sent")
		case a.Revoked:
			t.revoked++
			t.problems = append(t.problems, fmt.Sprintf("learner %d: an assertion was revoked", e.uid))
		default:
			held[a.Recipient]++
		}
	}
	for _, e := range events {
		n := held[e.email]
		if n > 0 {
			t.awarded++
		}
		switch {
		case n > 1:
			t.duplicates++
			t.problems = append(t.problems, fmt.Sprintf("learner %d: %d unrevoked assertions", e.uid, n))
		case n == 0 && e.last().OK():
			t.missing++
			t.problems = append(t.problems, fmt.Sprintf("learner %d: answered 200, not awarded", e.uid))
		case n == 1 && !e.last().OK():
			// Awarded although never answered 200: allowed (the write happened, the answer did
			// not say so), but worth seeing.
			t.problems = append(t.problems, fmt.Sprintf("learner %d: awarded without a 200", e.uid))
		}
	}
	return t
}

// timeline: per second from the kill, the answers 200 / 503 / transport error (resends
// included), and the awards the host created.
func timeline(events []*event, sb *sandbox.Host, killedAt time.Time) string {
	tl := testutil.NewTimeline(killedAt, "awards")
	for _, e := range events {
		tl.Answers(e.answers)
	}
	for _, a := range sb.Assertions(badgeClass) {
		tl.Count("awards", a.CreatedAt)
	}
	return tl.String()
}
