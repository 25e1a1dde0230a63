// Package cluster runs the bridge on a real Redis Cluster (three primaries, a replica each)
// while one primary hands over to its replica: webhooks and event-bus entries keep coming, and
// every learner must end up with exactly one unrevoked assertion.
package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/sandbox"
	"github.com/badgebridge/bridge/internal/testutil"
	"github.com/badgebridge/bridge/internal/webhook"
)

const (
	badgeClass = "ClusterClass000000001"
	course     = "course-v1:Cluster+C101+2025"
	stream     = "cluster-learning-certificate-lifecycle"
	adminToken = "cluster-admin-token-0123456789abcdef01234"
	hostUser   = "cluster-svc"
	hostPass   = "cluster-password-0123"
	hookKey    = "cluster-hook-key-0123456789abcdef" // 33 bytes: a whsec_ secret

	learners    = 500                    // half by webhook, half by event bus
	rate        = 50                     // new events per second: the stream lasts 10 s
	retryEvery  = 250 * time.Millisecond // a sender's pause before resending
	inflightCap = 32                     // webhook requests in flight at once
	resendFor   = 20 * time.Second       // how long resends go on after the stream
	httpTimeout = 15 * time.Second       // above the bridge's own 10 s intake bound

	// ledgerProbe is a key in the slot of the ledger's hash tag {b0} (learner keys are tagged
	// {b<uid mod 256>}): failing over its primary moves ledger rows while they are written.
	ledgerProbe = "bb:{b0}:owed"
	// queueProbe is a key of asynq's reconcile queue, whose keys share the tag {reconcile}. With
	// three primaries it is not on {b0}'s one, so -cluster.failover=queue tries that case too.
	queueProbe = "asynq:{reconcile}:pending"
)

var failoverOf = flag.String("cluster.failover", "ledger",
	"which primary to fail over: ledger (the one of the ledger bucket {b0}) or queue (the one of asynq's reconcile queue)")

// convergeFor bounds how long the awards, the owed marks and the event-bus group may take to
// settle after the last event is sent.
var convergeFor = flag.Duration("cluster.converge", 120*time.Second, "how long the awards may take after the last event is sent")

const mapping = `badges:
  - name: Cluster
    badge_class: ` + badgeClass + `
    when:
      courses: ["course-v1:Cluster+*"]
    narrative: "Completed {{.CourseKey}}"
`

// learner is one learner's certificate event, sent once on one input. Only the goroutine that
// delivers it touches its mutable fields until the senders are waited for.
type learner struct {
	uid    int64
	id     string // event id
	email  string // never printed
	viaBus bool

	sentAt  time.Time         // XADD, or the first webhook request
	busErr  error             // XADD failed
	answers []testutil.Answer // webhook attempts, in order
}

func (l *learner) answered() bool { return len(l.answers) > 0 && l.answers[len(l.answers)-1].OK() }

func newLearner(i int) *learner {
	// A prime stride spreads the ids over the hash slots and over every ledger tag
	// {b<uid mod 256>} (about two learners each), not over a few neighbouring ones.
	uid := int64(1_000_003 + i*7919)
	return &learner{uid: uid, id: fmt.Sprintf("cluster-%d", uid), viaBus: i%2 == 1,
		email: fmt.Sprintf("cluster.learner%d@example.org", uid)}
}

// certificate is the event's payload: a passing (downloadable) certificate of the mapped course.
func (l *learner) certificate() map[string]any {
	return map[string]any{"certificate": map[string]any{
		"user": map[string]any{"id": l.uid, "is_active": true, "pii": map[string]any{
			"username": fmt.Sprintf("cluster%d", l.uid), "email": l.email, "name": "Cluster Learner"}},
		"course": map[string]any{"course_key": course, "display_name": "", "start": nil, "end": nil},
		"mode":   "verified", "grade": "0.9", "download_url": "", "name": "Cluster Learner",
		"current_status": "downloadable", "previous_status": "",
	}}
}

// publish writes the event to the bus as openedx/event-bus-redis does.
func (l *learner) publish(bus *redis.Client, at time.Time) error {
	data, err := edx.EncodeAvro(edx.TypeCertificateCreated, l.certificate())
	if err != nil {
		return err
	}
	return bus.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, MaxLen: 10000, Approx: true, Values: []any{
		"type", edx.TypeCertificateCreated, "id", l.id, "source", "openedx/lms/web",
		"time", at.UTC().Format("2006-01-02T15:04:05.000000+00:00"), "minorversion", "0",
		"sourcehost", "cluster-test", "sourcelib", "11.2.0", "event_data", data,
	}}).Err()
}

// webhook is the event as a webhook's body: the payload with the event's metadata.
func (l *learner) webhook(at time.Time) []byte {
	body := l.certificate()
	body["event_metadata"] = map[string]any{"id": l.id, "event_type": edx.TypeCertificateCreated,
		"time": at.UTC().Format(time.RFC3339Nano), "source": "openedx/lms/web"}
	raw, _ := json.Marshal(body)
	return raw
}

// admin reads the bridge's state through its admin API rather than the ledger's keys, whose
// names and tags are the ledger's business.
type admin struct {
	base   string
	client *http.Client
}

func (a admin) get(path string, out any) (int, error) {
	req, _ := http.NewRequest(http.MethodGet, a.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode, nil
}

// owed is the number of rows with a reconcile owed, -1 when the bridge cannot tell.
func (a admin) owed() int64 {
	var st struct {
		Owed *int64 `json:"owed_rows"`
	}
	if code, err := a.get("/v1/status", &st); err != nil || code != http.StatusOK || st.Owed == nil {
		return -1
	}
	return *st.Owed
}

// TestClusterFailover streams 500 certificate events, half as signed webhooks into `bridge
// serve`, half on the event bus read by two `bridge work`, all on a Redis Cluster, and fails
// over one primary to its replica after about a third of them.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("Redis Cluster failover run skipped in -short mode")
	}
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not found on PATH; skipping the Redis Cluster run", bin)
		}
	}
	probe := ledgerProbe
	switch *failoverOf {
	case "ledger":
	case "queue":
		probe = queueProbe
	default:
		t.Fatalf("-cluster.failover=%q: want ledger or queue", *failoverOf)
	}
	setupStart := time.Now()
	cl := testutil.StartCluster(t)
	busSrv := testutil.StartRedis(t)
	bus := busSrv.Client(t)
	t.Logf("cluster of six nodes and the event bus ready in %s", time.Since(setupStart).Round(10*time.Millisecond))

	sb := sandbox.New(sandbox.Options{Username: hostUser, Password: hostPass, BadgeClasses: []string{badgeClass}})
	hostURL := testutil.ServeHost(t, sb)
	mappingFile := testutil.WriteFile(t, "mapping.yaml", mapping)
	env := []string{
		"BRIDGE_REDIS_CLUSTER_ADDRS=" + strings.Join(cl.Addrs(), ","),
		"BRIDGE_EVENTBUS_REDIS_URL=" + busSrv.URL, "BRIDGE_EVENTBUS_STREAMS=" + stream, "BRIDGE_EVENTBUS_START=oldest",
		"BRIDGE_BADGR_URL=" + hostURL, "BRIDGE_BADGR_USERNAME=" + hostUser, "BRIDGE_BADGR_PASSWORD=" + hostPass,
		"BRIDGE_MAPPING_FILE=" + mappingFile, "BRIDGE_ADMIN_TOKEN=" + adminToken,
		"BRIDGE_WEBHOOK_SECRETS=whsec_" + base64.StdEncoding.EncodeToString([]byte(hookKey)),
		"BRIDGE_BADGR_TIMEOUT=2s", "BRIDGE_SETTLE=3s", "BRIDGE_SHUTDOWN_GRACE=5s", "BRIDGE_BADGR_RATE_LIMIT=0",
		"BRIDGE_WORKER_CONCURRENCY=10", "BRIDGE_LOG_LEVEL=warn",
		// Every 200 and acknowledgement waits for a replica on each shard the event wrote to.
		"BRIDGE_REDIS_MIN_REPLICAS=1",
	}
	serve := testutil.StartBridge(t, env, "serve")
	// Both workers run on this host: without distinct names (a pod's name in production) they
	// would share one event-bus consumer name, and each would take the other's pending entries
	// for its own.
	w1 := testutil.StartBridge(t, append(env[:len(env):len(env)], "POD_NAME=cluster-worker-1"), "work")
	w2 := testutil.StartBridge(t, append(env[:len(env):len(env)], "POD_NAME=cluster-worker-2"), "work")
	procs := []*testutil.Proc{serve, w1, w2}

	s := testutil.NewWebhookSender(t, "http://"+serve.HTTP+"/v1/webhooks/openedx", testutil.SenderOptions{
		Key: []byte(hookKey), Sign: webhook.Sign, InFlight: inflightCap, Timeout: httpTimeout, RetryEvery: retryEvery})
	adm := admin{base: "http://" + serve.Admin, client: &http.Client{Timeout: 10 * time.Second}}

	ls := make([]*learner, learners)
	byEmail := map[string]*learner{}
	for i := range ls {
		ls[i] = newLearner(i)
		byEmail[ls[i].email] = ls[i]
	}

	// The stream: a new event every 1/rate seconds, alternately on each input; each webhook is
	// delivered (and resent) by its own goroutine. It ends with the last learner.
	third := make(chan struct{})
	st := testutil.NewStream(rate)
	start := time.Now()
	st.Start(t, func(i int, now time.Time) bool {
		l := ls[i]
		l.sentAt = now
		if l.viaBus {
			l.busErr = l.publish(bus, now)
		} else {
			st.Deliver(func(giveUp <-chan struct{}) { l.answers = s.Deliver(l.id, l.webhook(now), giveUp) })
		}
		if i+1 == learners/3 {
			close(third)
		}
		return i+1 < len(ls)
	})

	<-third
	victim := cl.PrimaryOf(t, probe)
	ledgerKeys := countKeys(victim, "bb:*")
	queueThere := cl.PrimaryOf(t, queueProbe) == victim
	failoverAt := time.Now()
	t.Logf("%5.1fs failing over primary %s (%d ledger keys on it; asynq queue keys there: %v)",
		failoverAt.Sub(start).Seconds(), victim, ledgerKeys, queueThere)
	cl.Failover(t, victim)
	failover := time.Since(failoverAt)
	t.Logf("%5.1fs %s's replica took over; cluster settled after %s",
		time.Since(start).Seconds(), victim, failover.Round(10*time.Millisecond))
	<-st.Done()
	streamEnd := time.Now()
	// Resends go on, bounded: whatever is not answered 200 by then is reported.
	st.Drain(resendFor)
	lastAnswer := time.Now()

	var ok200, first503, n503, nErr, resends, other, neverOK, busErrs int
	refusals := map[string]int{} // 503 reasons: which step of the bridge the failover reached
	var refused testutil.Span    // the 503 answers
	for _, l := range ls {
		if l.viaBus {
			if l.busErr != nil {
				busErrs++
				t.Errorf("learner %d: XADD to the event bus: %v", l.uid, l.busErr)
			}
			continue
		}
		resends += len(l.answers) - 1
		if l.answers[0].Code == http.StatusServiceUnavailable {
			first503++
		}
		for _, a := range l.answers {
			switch {
			case a.OK():
				ok200++
			case a.Code == http.StatusServiceUnavailable:
				n503++
				refusals[a.Message]++
				refused.Add(a.Done)
			case a.Code == 0:
				nErr++
			default:
				other++
				t.Errorf("learner %d: webhook answered %d", l.uid, a.Code)
			}
		}
		if !l.answered() {
			neverOK++
		}
	}

	// Wait for the awards: every learner holds exactly one unrevoked assertion. Then for the
	// bridge to go quiet (nothing owed, every bus entry acknowledged), and count again: a late
	// duplicate could only come from work still owed.
	var tl tally
	var awardedAt time.Time
	deadline := streamEnd.Add(*convergeFor)
	if ok200 == 0 {
		// Nothing was recorded through the webhooks: the ledger cannot write, and waiting for
		// awards would only add minutes to the failure.
		t.Logf("no webhook was answered 200: not waiting for awards")
		deadline = time.Now()
	}
	for {
		tl = count(sb.Assertions(badgeClass), ls, byEmail)
		if tl.exact() {
			awardedAt = time.Now()
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	owed, busOK := adm.owed(), busDone(bus)
	for !awardedAt.IsZero() && (owed != 0 || !busOK) && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		owed, busOK = adm.owed(), busDone(bus)
	}
	tl = count(sb.Assertions(badgeClass), ls, byEmail)

	// Every event the bridge took (answered 200, or an acknowledged bus entry) has its record:
	// CLUSTER FAILOVER loses no acknowledged write, so a missing record is the bridge's.
	// (Bus entries only once the group has acknowledged them all: before, one may be unread.)
	lost := 0
	for _, l := range ls {
		if (l.viaBus && busOK) || l.answered() {
			var rec map[string]any
			code, err := adm.get("/v1/events/"+url.PathEscape(l.id), &rec)
			if err != nil || code != http.StatusOK {
				lost++
				tl.problems = append(tl.problems, fmt.Sprintf("learner %d (%s): event record: %d %v", l.uid, input(l), code, err))
			}
		}
	}

	converge := "not converged"
	if !awardedAt.IsZero() {
		converge = awardedAt.Sub(streamEnd).Round(10 * time.Millisecond).String()
	}
	window := refused.From(failoverAt)
	unacked := "0"
	if !busOK {
		unacked = "some"
	}
	webhooks := learners - learners/2
	report := fmt.Sprintf(`
cluster failover run: %d learners at %d/s; primary %s (%d ledger keys, asynq queue there: %v) failed over at %+.1fs
| sent by webhook | sent by event bus | 200 | 503 first try | 503 | transport errors | resends | never 200 | failover time | 503s (from the failover) |
|---|---|---|---|---|---|---|---|---|---|
| %d | %d | %d | %d | %d | %d | %d | %d | %s | %s |

| awarded once | missing | duplicated | revoked | event records lost | owed rows left | bus entries unacked | time to converge (from the last event sent) |
|---|---|---|---|---|---|---|---|
| %d | %d | %d | %d | %d | %d | %s | %s |
the last webhook was answered %s after the stream ended
`, learners, rate, victim, ledgerKeys, queueThere, failoverAt.Sub(start).Seconds(),
		webhooks, learners/2-busErrs, ok200, first503, n503, nErr, resends, neverOK,
		failover.Round(10*time.Millisecond), window,
		tl.once, tl.missing, tl.duplicated, tl.revoked, lost, owed, unacked, converge,
		lastAnswer.Sub(streamEnd).Round(10*time.Millisecond))
	testutil.PublishReport(t, "CLUSTER_REPORT", report)
	t.Log("webhook answers and awards per second from the failover:\n" + timeline(ls, sb, failoverAt))
	for msg, n := range refusals {
		t.Logf("%d × 503 %q", n, msg)
	}
	for _, p := range procs {
		t.Logf("bridge %v log messages (level warn and above):\n%s", p.Args, testutil.LogSummary(p.Stderr.String()))
	}
	testutil.LogProblems(t, tl.problems)
	if neverOK > 0 {
		t.Errorf("%d webhooks never answered 200 within %s of the stream's end", neverOK, resendFor)
	}
	if other > 0 {
		t.Errorf("%d answers were neither 200 nor 503", other)
	}
	if !tl.exact() {
		t.Errorf("awards: %d learners missing, %d with more than one unrevoked assertion, %d assertions for unknown recipients",
			tl.missing, tl.duplicated, tl.strangers)
	}
	if lost > 0 {
		t.Errorf("%d events taken by the bridge have no event record", lost)
	}
	if owed != 0 {
		t.Errorf("owed rows at the end: %d (-1: /v1/status failed)", owed)
	}
	if !busOK {
		t.Errorf("event-bus entries left pending or unread by the group")
	}
	for _, p := range procs {
		p.Stop(t, 30*time.Second)
	}
}

type tally struct {
	once, missing, duplicated, revoked, strangers int
	problems                                      []string
}

func (t tally) exact() bool { return t.missing == 0 && t.duplicated == 0 && t.strangers == 0 }

// count compares the host's assertions of the badge class with the learners: each holds exactly
// one unrevoked assertion, nobody else holds one. Revoked assertions (duplicates the bridge
// cleaned up) are counted, not failed.
func count(as []badgehost.Assertion, ls []*learner, byEmail map[string]*learner) tally {
	held := map[string]int{}
	var t tally
	for _, a := range as {
		l := byEmail[a.Recipient]
		switch {
		case l == nil:
			t.strangers++
			t.problems = append(t.problems, "an assertion for a recipient the test never sent")
		case a.Revoked:
			t.revoked++
			t.problems = append(t.problems, fmt.Sprintf("learner %d: an assertion was revoked (%s)", l.uid, a.RevocationReason))
		default:
			held[a.Recipient]++
		}
	}
	for _, l := range ls {
		switch n := held[l.email]; {
		case n == 1:
			t.once++
		case n == 0:
			t.missing++
			t.problems = append(t.problems, fmt.Sprintf("learner %d (%s): not awarded", l.uid, input(l)))
		default:
			t.duplicated++
			t.problems = append(t.problems, fmt.Sprintf("learner %d (%s): %d unrevoked assertions", l.uid, input(l), n))
		}
	}
	return t
}

func input(l *learner) string {
	if l.viaBus {
		return "event bus"
	}
	return "webhook"
}

// busDone: every entry written was read and acknowledged by the bridge's group.
func busDone(bus *redis.Client) bool {
	groups, err := bus.XInfoGroups(context.Background(), stream).Result()
	if err != nil || len(groups) == 0 {
		return false
	}
	g := groups[0]
	return g.Pending == 0 && g.Lag == 0
}

// countKeys counts the keys matching pattern on one node (-1 on error).
func countKeys(addr, pattern string) int {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	n := 0
	iter := rdb.Scan(context.Background(), 0, pattern, 1000).Iterator()
	for iter.Next(context.Background()) {
		n++
	}
	if iter.Err() != nil {
		return -1
	}
	return n
}

// timeline: per second from the failover, the webhook answers 200 / 503 / transport error
// (resends included), the event-bus entries written, and the awards the host created.
func timeline(ls []*learner, sb *sandbox.Host, from time.Time) string {
	tl := testutil.NewTimeline(from, "bus entries", "awards")
	for _, l := range ls {
		if l.viaBus {
			if !l.sentAt.IsZero() {
				tl.Count("bus entries", l.sentAt)
			}
			continue
		}
		tl.Answers(l.answers)
	}
	for _, a := range sb.Assertions(badgeClass) {
		tl.Count("awards", a.CreatedAt)
	}
	return tl.String()
}
