package badgr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/badgr/wire"
	"github.com/badgebridge/bridge/internal/sandbox"
	"github.com/badgebridge/bridge/internal/testutil"
)

const issueRoute = "POST /v2/badgeclasses/{id}/issue"

// requests returns n award requests for distinct recipients, issued an hour ago.
func requests(n int, format string) []badgehost.AwardRequest {
	issued := time.Now().Add(-time.Hour)
	out := make([]badgehost.AwardRequest, n)
	for i := range out {
		out[i] = badgehost.AwardRequest{Email: fmt.Sprintf(format, i), IssuedOn: issued}
	}
	return out
}

// batchBodies returns the items of every batch award the client sent, in order.
func batchBodies(t *testing.T, rec *recorder) [][]map[string]any {
	t.Helper()
	var out [][]map[string]any
	for _, r := range rec.all() {
		if r.method != http.MethodPost || !strings.HasSuffix(r.path, "/issue") {
			continue
		}
		var body map[string][]map[string]any
		if err := json.Unmarshal([]byte(r.body), &body); err != nil {
			t.Fatalf("batch body is not an object of assertions: %v: %.200s", err, r.body)
		}
		if len(body) != 1 {
			t.Errorf("batch body keys: %v", body)
		}
		out = append(out, body["assertions"])
	}
	return out
}

// checkResults fails on any result whose error or assertion carries an e-mail or a secret.
func checkResults(t *testing.T, res map[string]badgehost.BatchResult) {
	t.Helper()
	for _, r := range res {
		assertNoSecrets(t, r.Err)
	}
}

// fakeHost is a badge host whose API answers come from api; the token endpoint always grants.
func fakeHost(t *testing.T, api http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/o/token") {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"access_token": "fake-access-token-1", "expires_in": 3600, "token_type": "Bearer"}`)
			return
		}
		api(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// batchItems decodes the recipients of a batch award request.
func batchItems(t *testing.T, r *http.Request) []string {
	t.Helper()
	raw, _ := io.ReadAll(r.Body)
	var body wire.BatchAward
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Errorf("batch body: %v", err)
	}
	var out []string
	for _, a := range body.Assertions {
		out = append(out, *a.Recipient.Identity)
	}
	return out
}

// created renders an assertion of recipient as a host would answer it.
func created(recipient string) wire.Assertion {
	return wire.Assertion{
		EntityID:  "id-" + strings.ReplaceAll(recipient, "@", "-at-"),
		CreatedAt: wire.FormatMicros(time.Now()),
		Recipient: wire.Recipient{Identity: "sha256$0000", Hashed: true, Type: "email", PlaintextIdentity: recipient},
		IssuedOn:  "2024-05-01T12:00:00Z",
	}
}

func writeEnvelope(w http.ResponseWriter, status int, result any, fieldErrors any) {
	env := map[string]any{"status": map[string]any{"success": status < 300, "description": "ok"}, "result": result}
	if status >= 300 {
		env["status"] = map[string]any{"success": false, "description": "bad request"}
		env["result"] = []any{}
		env["fieldErrors"] = fieldErrors
		env["validationErrors"] = []any{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(env)
}

// --- ListClass ---

// Every page of a large class: over 500 assertions is several pages, expired ones are kept and
// revoked ones left out.
func TestListClassPages(t *testing.T) {
	e := newEnv(t, func(o *sandbox.Options) { o.BadgeClasses = append(o.BadgeClasses, "OtherClass") })
	c := e.client()
	tok, err := c.accessToken(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	var items []string
	for i := range 1203 {
		item := fmt.Sprintf(`{"recipient":{"identity":"l%04d@example.org"}`, i)
		if i == 17 {
			item += `,"expires":"` + past + `"`
		}
		items = append(items, item+"}")
	}
	var made []wire.Assertion
	for chunk := range slices.Chunk(items, maxBatch) {
		var answer struct {
			Result []wire.Assertion `json:"result"`
		}
		postJSON(t, tok.Access, e.srv.URL+"/v2/badgeclasses/"+testClass+"/issue", `{"assertions":[`+strings.Join(chunk, ",")+`]}`, http.StatusCreated, &answer)
		made = append(made, answer.Result...)
	}
	postJSON(t, tok.Access, e.srv.URL+"/v2/badgeclasses/OtherClass/issue", `{"assertions":[{"recipient":{"identity":"else@example.org"}}]}`, http.StatusCreated, nil)
	revoked := made[600].EntityID
	if err := c.Revoke(ctxT(t), revoked, "test"); err != nil {
		t.Fatal(err)
	}
	before := len(e.rec.all())

	list, err := c.ListClass(ctxT(t), testClass)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1202 {
		t.Fatalf("ListClass returned %d assertions, want 1202", len(list))
	}
	seen := map[string]bool{}
	expired := 0
	for i, a := range list {
		if seen[a.EntityID] || a.Revoked || a.EntityID == revoked || a.BadgeClass != testClass || !strings.HasSuffix(a.Recipient, "@example.org") {
			t.Fatalf("entry %d: %+v", i, a)
		}
		seen[a.EntityID] = true
		if a.Expires != nil && a.Expires.Before(time.Now()) {
			expired++
		}
	}
	if expired != 1 {
		t.Errorf("%d expired assertions listed, want 1", expired)
	}
	var pages []recorded
	for _, r := range e.rec.all()[before:] {
		if r.method == http.MethodGet {
			pages = append(pages, r)
		}
	}
	if len(pages) != 3 || pages[0].rawQuery != "include_expired=1&num=500" || !strings.Contains(pages[1].rawQuery, "cursor=") {
		t.Errorf("%d pages fetched (want 3), first %q", len(pages), pages[0].rawQuery)
	}

	_, err = c.ListClass(ctxT(t), "unknownClass")
	var perm *badgehost.PermanentError
	if !errors.As(err, &perm) {
		t.Errorf("unknown class: %#v", err)
	}
}

// A host that pages small, leaves the badge class out, lists a revoked assertion and repeats one
// across pages: every page followed, the class named, the revoked and the repeat left out.
func TestListClassFollowsLinks(t *testing.T) {
	pages := map[string][]map[string]any{
		"": {
			{"entityId": "a1", "recipient": map[string]any{"identity": "a@example.org"}, "createdAt": "2024-05-01T12:00:05Z"},
			{"entityId": "r1", "recipient": map[string]any{"identity": "r@example.org"}, "createdAt": "2024-05-01T12:00:04Z", "revoked": true},
		},
		"c2": {
			{"entityId": "a1", "recipient": map[string]any{"identity": "a@example.org"}, "createdAt": "2024-05-01T12:00:05Z"},
			{"entityId": "b1", "recipient": map[string]any{"identity": "B@Example.org"}, "createdAt": "2024-05-01T12:00:03Z", "expires": "2024-06-01T00:00:00Z"},
		},
		"c3": {
			{"entityId": "c1", "recipient": map[string]any{"identity": "c@example.org"}, "createdAt": "2024-05-01T12:00:02Z"},
		},
	}
	next := map[string]string{"": "c2", "c2": "c3"}
	var mu sync.Mutex
	var asked []string
	host := fakeHost(t, func(w http.ResponseWriter, r *http.Request) {
		cur := r.URL.Query().Get("cursor")
		mu.Lock()
		asked = append(asked, r.URL.RawQuery)
		mu.Unlock()
		if n := next[cur]; n != "" {
			w.Header().Set("Link", `<`+r.URL.Path+`?cursor=`+n+`&include_expired=1&num=500>; rel="next"`)
		}
		writeEnvelope(w, 200, pages[cur], nil)
	})
	e := newEnv(t)
	c := e.client(func(cfg *Config) { cfg.BaseURL = host.URL })
	list, err := c.ListClass(ctxT(t), testClass)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range list {
		if a.BadgeClass != testClass {
			t.Errorf("%s: badge class %q", a.EntityID, a.BadgeClass)
		}
		got = append(got, a.EntityID+"/"+a.Recipient)
	}
	if strings.Join(got, " ") != "a1/a@example.org b1/b@example.org c1/c@example.org" || len(asked) != 3 {
		t.Errorf("listed %v after %d requests %v", got, len(asked), asked)
	}
}

// --- AwardBatch against the sandbox ---

// 250 awards are three requests of at most 100, each item what a single award sends, every
// result matched to its recipient; each request passes the shared rate limiter once (a real
// redis-server holds it).
func TestAwardBatchSplitsAndMatches(t *testing.T) {
	rs := testutil.StartRedis(t)
	e := newEnv(t)
	// At 20 requests/s, a limiter counting items would need 12 s for 250: more than the deadline.
	c := e.clientOn(rs.Client(t), func(cfg *Config) { cfg.RateLimit = 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	reqs := requests(250, "Learner%03d@Example.org")
	issued := time.Date(2024, 5, 1, 12, 0, 0, 123456000, time.UTC)
	expires := issued.AddDate(1, 0, 0)
	reqs[7] = badgehost.AwardRequest{
		Email: "Learner007@Example.org", IssuedOn: issued, Narrative: "Completed DemoX",
		EvidenceURL: "https://lms.example.org/certificates/7", Notify: true, Expires: &expires,
		IdempotencyKey: "ignored-in-batches",
	}
	res, err := c.AwardBatch(ctx, testClass, reqs)
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]string{}
	for _, a := range e.sb.Assertions(testClass) {
		held[a.Recipient] = a.EntityID
	}
	if len(res) != 250 || len(held) != 250 {
		t.Fatalf("%d results, %d assertions held; want 250 each", len(res), len(held))
	}
	for i := range reqs {
		key := fmt.Sprintf("learner%03d@example.org", i)
		r, ok := res[key]
		if !ok || r.Err != nil || r.Assertion.Recipient != key || r.Assertion.EntityID != held[key] || r.Assertion.BadgeClass != testClass {
			t.Fatalf("result for %s: %+v (held %s)", key, r, held[key])
		}
	}
	if a := res["learner007@example.org"].Assertion; !a.IssuedOn.Equal(issued) || a.Expires == nil || !a.Expires.Equal(expires) {
		t.Errorf("assertion 7: %+v", a)
	}

	bodies := batchBodies(t, e.rec)
	if n := e.sb.Requests()[issueRoute]; n != 3 || len(bodies) != 3 ||
		len(bodies[0]) != 100 || len(bodies[1]) != 100 || len(bodies[2]) != 50 {
		t.Fatalf("%d batch requests; items %d", n, len(bodies))
	}
	want := map[string]any{
		"recipient":            map[string]any{"identity": "learner007@example.org", "type": "email", "hashed": true},
		"issuedOn":             "2024-05-01T12:00:00.123456Z",
		"narrative":            "Completed DemoX",
		"evidence":             []any{map[string]any{"url": "https://lms.example.org/certificates/7"}},
		"notify":               true,
		"expires":              "2025-05-01T12:00:00.123456Z",
		"allowDuplicateAwards": false,
	}
	if fmt.Sprint(bodies[0][7]) != fmt.Sprint(want) {
		t.Errorf("batch item\n got %v\nwant %v", bodies[0][7], want)
	}
	for _, r := range e.rec.all() {
		if strings.HasSuffix(r.path, "/issue") && r.header.Get("Idempotency-Key") != "" {
			t.Error("a batch request carries an Idempotency-Key")
		}
	}
}

// A recipient who holds the badge already: Badgr refuses the whole batch, that item is
// ErrAlreadyAwarded and the others are created by a second request without it.
func TestAwardBatchAlreadyAwarded(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	first := mustAward(t, c, "learner002@example.org")
	reqs := requests(5, "learner%03d@example.org")
	reqs[2].Email = "LEARNER002@example.org"

	res, err := c.AwardBatch(ctxT(t), testClass, reqs)
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, res)
	if r := res["learner002@example.org"]; !errors.Is(r.Err, badgehost.ErrAlreadyAwarded) {
		t.Errorf("held recipient: %+v", r)
	}
	for _, i := range []int{0, 1, 3, 4} {
		if r := res[fmt.Sprintf("learner%03d@example.org", i)]; r.Err != nil || r.Assertion.EntityID == "" {
			t.Errorf("item %d: %+v", i, r)
		}
	}
	bodies := batchBodies(t, e.rec)
	if len(bodies) != 2 || len(bodies[0]) != 5 || len(bodies[1]) != 4 {
		t.Fatalf("batch requests %d, want 2 (5 items, then the 4 valid ones)", len(bodies))
	}
	held := e.sb.Assertions(testClass)
	if len(held) != 5 || held[0].EntityID != first.EntityID {
		t.Errorf("sandbox holds %d assertions, want 5", len(held))
	}
}

// An invalid item is refused for good with the host's reason; the others are created.
func TestAwardBatchInvalidItem(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	reqs := requests(4, "learner%03d@example.org")
	reqs[1].Email = "learner001-at-example.org"
	reqs[3].IssuedOn = time.Now().Add(time.Hour)

	res, err := c.AwardBatch(ctxT(t), testClass, reqs)
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, res)
	want := map[string]string{
		"learner001-at-example.org": "batch award: bad request: recipient: Enter a valid email address.",
		"learner003@example.org":    "batch award: bad request: Only issuedOn dates in the past are acceptable.",
	}
	for key, reason := range want {
		var perm *badgehost.PermanentError
		var he *HostError
		if r := res[key]; !errors.As(r.Err, &perm) || perm.Reason != reason || !errors.As(r.Err, &he) || he.Status != 400 {
			t.Errorf("%s: %#v, want a permanent error %q", key, r.Err, reason)
		}
	}
	for _, key := range []string{"learner000@example.org", "learner002@example.org"} {
		if r := res[key]; r.Err != nil || r.Assertion.Recipient != key {
			t.Errorf("%s: %+v", key, r)
		}
	}
	if n := e.sb.Requests()[issueRoute]; n != 2 || len(e.sb.Assertions(testClass)) != 2 {
		t.Errorf("%d batch requests, %d assertions; want 2 and 2", n, len(e.sb.Assertions(testClass)))
	}
}

// No batch route (405), or a 404 (no route, or no such class: Badgr cannot tell them apart):
// ErrBatchUnsupported, not a permanent error, and nothing else is sent.
func TestAwardBatchUnsupported(t *testing.T) {
	e := newEnv(t)
	var status int
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/issue") && status != 0 {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(status)
			fmt.Fprint(w, "<title>Not here</title>")
			return
		}
		e.sb.ServeHTTP(w, r)
	}))
	defer front.Close()
	c := e.client(func(cfg *Config) { cfg.BaseURL = front.URL })
	for _, tc := range []struct {
		name, class string
		status      int
	}{
		{"unknown class", "unknownClass", 0},
		{"unrouted", testClass, http.StatusNotFound},
		{"method not allowed", testClass, http.StatusMethodNotAllowed},
	} {
		status = tc.status
		before := len(batchBodies(t, e.rec))
		res, err := c.AwardBatch(ctxT(t), tc.class, requests(150, "l%d@example.org"))
		var perm *badgehost.PermanentError
		if !errors.Is(err, badgehost.ErrBatchUnsupported) || errors.As(err, &perm) || res != nil {
			t.Errorf("%s: %v, %v", tc.name, res, err)
		}
		assertNoSecrets(t, err)
		if n := len(batchBodies(t, e.rec)) - before; n != 1 {
			t.Errorf("%s: %d batch requests, want 1", tc.name, n)
		}
	}
	if n := len(e.sb.Assertions(testClass)); n != 0 {
		t.Errorf("%d assertions", n)
	}
}

// An expired token is renewed once and the batch repeated.
func TestAwardBatchRenewsToken(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	if err := c.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	e.sb.ExpireTokens()
	res, err := c.AwardBatch(ctxT(t), testClass, requests(3, "l%d@example.org"))
	if err != nil || len(res) != 3 {
		t.Fatalf("%v, %v", res, err)
	}
	if g, n := e.sb.TokenGrants(), e.sb.Requests()[issueRoute]; g["refresh_token"] != 1 || n != 2 {
		t.Errorf("grants %v, %d batch requests; want one refresh and 2 requests (401, then 201)", g, n)
	}
	if n := len(e.sb.Assertions(testClass)); n != 3 {
		t.Errorf("%d assertions, want 3", n)
	}
}

// A failed first request fails the call, classified as a single award's would be: 5xx and
// timeouts retryable (outcome unknown), 429 a wait, a refusal without per-item errors permanent.
func TestAwardBatchFirstRequestFails(t *testing.T) {
	e := newEnv(t)
	c := e.client(func(cfg *Config) { cfg.Timeout = 300 * time.Millisecond })
	if err := c.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	reqs := requests(150, "l%03d@example.org")

	e.sb.FailNext(1, http.StatusInternalServerError)
	res, err := c.AwardBatch(ctxT(t), testClass, reqs)
	var he *HostError
	var wait *badgehost.WaitError
	var perm *badgehost.PermanentError
	if res != nil || !errors.As(err, &he) || he.Status != 500 || errors.As(err, &wait) || errors.As(err, &perm) ||
		err.Error() != "badgr batch award: 500 internal server error: non-JSON answer (text/html)" {
		t.Errorf("500: %v, %#v", res, err)
	}
	assertNoSecrets(t, err)

	e.sb.SetLatency(time.Second)
	res, err = c.AwardBatch(ctxT(t), testClass, reqs)
	if res != nil || !errors.As(err, &he) || !he.Timeout || errors.As(err, &perm) {
		t.Errorf("timeout: %v, %#v", res, err)
	}
	e.sb.SetLatency(0)

	// More items than the sandbox accepts (a client that did not split): its refusal has no
	// per-item errors, so it cannot be read as one.
	items := make([]wire.Award, maxBatch+1)
	for i := range items {
		items[i] = awardItem(reqs[i])
	}
	resp, err := c.do(ctxT(t), apiRequest{op: opBatch, method: http.MethodPost, url: c.apiURL("v2", "badgeclasses", testClass, "issue"), body: wire.BatchAward{Assertions: items}})
	if err != nil || resp.status != 400 {
		t.Fatalf("101 items: %v %v", resp, err)
	}
	if _, ok := resp.env.ItemErrors(len(items)); ok {
		t.Error("a refusal without per-item errors read as per-item errors")
	}

	e.sb.FailNext(1, http.StatusTooManyRequests)
	res, err = c.AwardBatch(ctxT(t), testClass, reqs)
	if res != nil || !errors.As(err, &wait) {
		t.Errorf("429: %v, %#v", res, err)
	}
	if n := len(e.sb.Assertions(testClass)); n != 0 {
		t.Errorf("%d assertions, want none", n)
	}
}

// --- AwardBatch against hosts the sandbox cannot play ---

// A refusal of the whole first request without per-item errors (Badgr's blacklist check runs
// while saving) fails the call as a single award's refusal would: permanent, with the reason.
func TestAwardBatchRefusedWithoutItemErrors(t *testing.T) {
	host := fakeHost(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"status": {"success": false, "description": "bad request"}, "result": [], "fieldErrors": {}, "validationErrors": ["You may not award this badge to this recipient."]}`)
	})
	e := newEnv(t)
	c := e.client(func(cfg *Config) { cfg.BaseURL = host.URL })
	res, err := c.AwardBatch(ctxT(t), testClass, requests(3, "l%d@example.org"))
	var perm *badgehost.PermanentError
	if res != nil || !errors.As(err, &perm) || perm.Reason != "batch award: bad request: You may not award this badge to this recipient." {
		t.Errorf("%v, %#v", res, err)
	}
}

// Results come back in another order, one is missing, one is for someone not asked for and one
// names no recipient: each result goes to its own recipient, the missing item has no entry.
func TestAwardBatchMatchesByRecipient(t *testing.T) {
	host := fakeHost(t, func(w http.ResponseWriter, r *http.Request) {
		items := batchItems(t, r)
		var out []wire.Assertion
		for i, rc := range slices.Backward(items) {
			if i == 3 {
				continue // refused while saving
			}
			out = append(out, created(rc))
		}
		nameless := created("hidden@example.org")
		nameless.Recipient.PlaintextIdentity = ""
		out = append(out[:2], append([]wire.Assertion{created("stranger@example.org"), nameless}, out[2:]...)...)
		writeEnvelope(w, http.StatusCreated, out, nil)
	})
	e := newEnv(t)
	c := e.client(func(cfg *Config) { cfg.BaseURL = host.URL })
	res, err := c.AwardBatch(ctxT(t), testClass, requests(6, "l%d@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res["l3@example.org"]; ok || len(res) != 5 {
		t.Errorf("results %v: want 5, none for l3", res)
	}
	for key, r := range res {
		if r.Err != nil || r.Assertion.Recipient != key || r.Assertion.EntityID != created(key).EntityID || r.Assertion.BadgeClass != testClass {
			t.Errorf("%s: %+v", key, r)
		}
	}
}

// The host refuses the batch again and again without saying why (every item's errors empty):
// three requests, then a retryable error for each item, neither permanent nor a wait.
func TestAwardBatchRefusedRepeatedly(t *testing.T) {
	var mu sync.Mutex
	posts := 0
	host := fakeHost(t, func(w http.ResponseWriter, r *http.Request) {
		items := batchItems(t, r)
		mu.Lock()
		posts++
		mu.Unlock()
		fe := make([]map[string]any, len(items))
		for i := range fe {
			fe[i] = map[string]any{}
		}
		writeEnvelope(w, http.StatusBadRequest, nil, fe)
	})
	e := newEnv(t)
	c := e.client(func(cfg *Config) { cfg.BaseURL = host.URL })
	res, err := c.AwardBatch(ctxT(t), testClass, requests(120, "l%03d@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	// Two chunks (100 and 20), three requests each.
	if posts != 6 || len(res) != 120 {
		t.Errorf("%d requests, %d results; want 6 and 120", posts, len(res))
	}
	for key, r := range res {
		var perm *badgehost.PermanentError
		var wait *badgehost.WaitError
		if !errors.Is(r.Err, errBatchRefused) || errors.As(r.Err, &perm) || errors.As(r.Err, &wait) {
			t.Fatalf("%s: %#v", key, r.Err)
		}
	}
	checkResults(t, res)
}

// A host that echoes addresses in its per-item errors: the reasons carry none.
func TestAwardBatchRefusalScrubsAddresses(t *testing.T) {
	host := fakeHost(t, func(w http.ResponseWriter, r *http.Request) {
		items := batchItems(t, r)
		fe := make([]any, len(items))
		for i, rc := range items {
			fe[i] = map[string]any{"recipient": map[string]any{"non_field_errors": []string{"You may not award this badge to " + rc + "."}}}
		}
		writeEnvelope(w, http.StatusBadRequest, nil, fe)
	})
	e := newEnv(t)
	c := e.client(func(cfg *Config) { cfg.BaseURL = host.URL })
	res, err := c.AwardBatch(ctxT(t), testClass, requests(2, "l%d@example.org"))
	if err != nil || len(res) != 2 {
		t.Fatalf("%v, %v", res, err)
	}
	for key, r := range res {
		var perm *badgehost.PermanentError
		if !errors.As(r.Err, &perm) || perm.Reason != "batch award: bad request: recipient: You may not award this badge to <email>" {
			t.Errorf("%s: %#v", key, r.Err)
		}
		assertNoSecrets(t, errors.New(perm.Reason), key)
	}
	checkResults(t, res)
}

// When a request after the first fails, the results already in stand and the rest are
// reported per item: no entry where the outcome is unknown, the refusal where the host refused,
// a retryable error (keeping a wait) for items never sent.
func TestAwardBatchLaterRequestFails(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	posts, failStatus := 0, 0
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/issue") {
			mu.Lock()
			posts++
			fail := posts == 2
			mu.Unlock()
			if fail {
				w.Header().Set("Retry-After", "7")
				writeEnvelope(w, failStatus, nil, map[string]any{})
				return
			}
		}
		e.sb.ServeHTTP(w, r)
	}))
	defer front.Close()
	c := e.client(func(cfg *Config) { cfg.BaseURL = front.URL })

	for round, tc := range []struct {
		status int
		failed func(error) bool // the second request's items; nil: no entry
		unsent func(error) bool
	}{
		{http.StatusServiceUnavailable, nil, func(err error) bool {
			var perm *badgehost.PermanentError
			return err != nil && badgehost.RetryAfter(err) == 7*time.Second && !errors.As(err, &perm)
		}},
		{http.StatusBadRequest, func(err error) bool {
			var perm *badgehost.PermanentError
			return errors.As(err, &perm)
		}, func(err error) bool {
			var perm *badgehost.PermanentError
			return err != nil && !errors.As(err, &perm)
		}},
		{http.StatusTooManyRequests, func(err error) bool {
			var wait *badgehost.WaitError
			return errors.As(err, &wait)
		}, func(err error) bool {
			var wait *badgehost.WaitError
			return errors.As(err, &wait)
		}},
	} {
		mu.Lock()
		posts, failStatus = 0, tc.status
		mu.Unlock()
		format := fmt.Sprintf("r%d-%%03d@example.org", round)
		res, err := c.AwardBatch(ctxT(t), testClass, requests(250, format))
		if err != nil {
			t.Fatalf("%d: %v", tc.status, err)
		}
		checkResults(t, res)
		for i := range 250 {
			key := fmt.Sprintf(format, i)
			r, ok := res[key]
			switch {
			case i < 100:
				if !ok || r.Err != nil || r.Assertion.Recipient != key {
					t.Fatalf("%d: first chunk, %s: %+v", tc.status, key, r)
				}
			case i < 200:
				if (tc.failed == nil && ok) || (tc.failed != nil && !tc.failed(r.Err)) {
					t.Fatalf("%d: failed chunk, %s: %v %#v", tc.status, key, ok, r.Err)
				}
			default:
				if !tc.unsent(r.Err) || !strings.Contains(r.Err.Error(), "not sent") {
					t.Fatalf("%d: unsent chunk, %s: %#v", tc.status, key, r.Err)
				}
			}
		}
		if posts != 2 {
			t.Errorf("%d: %d batch requests, want 2", tc.status, posts)
		}
		// The 429's pause would hold the next round back.
		_ = e.rdb.Del(ctxT(t), "bb:{badgr}:pause").Err()
	}
}

// A batch award may take longer than one award (batchTimeout × BRIDGE_BADGR_TIMEOUT): a host
// that answers a batch after twice the single timeout still gets its answer read.
func TestAwardBatchHasALongerTimeout(t *testing.T) {
	const single = 300 * time.Millisecond
	host := fakeHost(t, func(w http.ResponseWriter, r *http.Request) {
		items := batchItems(t, r)
		time.Sleep(2 * single)
		var out []wire.Assertion
		for _, rc := range items {
			out = append(out, created(rc))
		}
		writeEnvelope(w, http.StatusCreated, out, nil)
	})
	e := newEnv(t)
	c := e.client(func(cfg *Config) { cfg.BaseURL = host.URL; cfg.Timeout = single })
	res, err := c.AwardBatch(ctxT(t), testClass, requests(3, "l%d@example.org"))
	if err != nil || len(res) != 3 {
		t.Fatalf("batch answered after 2 single timeouts: %v, %d results", err, len(res))
	}
}
