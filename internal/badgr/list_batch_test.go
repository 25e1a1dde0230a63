package badgr

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/sandbox"
)

// A learner with many addresses is looked up 20 recipients at a time, never in one URL the host
// would refuse.
func TestListBatchesRecipients(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	var emails []string
	for i := range 45 {
		email := fmt.Sprintf("learner%02d@example.org", i)
		emails = append(emails, email)
		if i%2 == 0 {
			mustAward(t, c, email)
		}
	}
	// Case variants and repeats are one recipient each.
	emails = append(emails, strings.ToUpper(emails[0]), emails[1])

	list, err := c.Lookup(ctxT(t), testClass, emails)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 23 {
		t.Fatalf("list returned %d assertions, want 23", len(list))
	}
	asked := map[string]int{}
	var perRequest []int
	for _, r := range e.rec.all() {
		if r.method != http.MethodGet || !strings.HasSuffix(r.path, "/assertions") {
			continue
		}
		q, err := url.ParseQuery(r.rawQuery)
		if err != nil {
			t.Fatal(err)
		}
		perRequest = append(perRequest, len(q["recipient"]))
		for _, rc := range q["recipient"] {
			asked[rc]++
		}
	}
	if len(perRequest) != 3 || perRequest[0] != 20 || perRequest[1] != 20 || perRequest[2] != 5 {
		t.Errorf("recipients per request %v, want [20 20 5]", perRequest)
	}
	if len(asked) != 45 {
		t.Errorf("%d distinct recipients asked for, want 45", len(asked))
	}
	for rc, n := range asked {
		if n != 1 {
			t.Errorf("recipient %s asked for %d times", rc, n)
		}
	}
}

// Assertions reported by several batches are returned once.
func TestListBatchesMergeByEntityID(t *testing.T) {
	var mu sync.Mutex
	requests := 0
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/o/token" {
			fmt.Fprint(w, `{"access_token": "tok", "expires_in": 3600, "token_type": "Bearer"}`)
			return
		}
		mu.Lock()
		requests++
		n := requests
		mu.Unlock()
		if got := len(r.URL.Query()["recipient"]); got > maxRecipientsPerList {
			t.Errorf("request with %d recipients", got)
		}
		result := []map[string]any{
			{"entityId": "shared-assertion", "recipient": map[string]any{"identity": "a@example.org"}, "createdAt": time.Now().Format(time.RFC3339)},
			{"entityId": fmt.Sprintf("own-%d", n), "recipient": map[string]any{"identity": "b@example.org"}, "createdAt": time.Now().Format(time.RFC3339)},
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"status": map[string]any{"success": true}, "result": result})
	}))
	defer host.Close()
	e := newEnv(t)
	c := e.client(func(cfg *Config) { cfg.BaseURL = host.URL })
	var emails []string
	for i := range 41 {
		emails = append(emails, fmt.Sprintf("x%d@example.org", i))
	}
	list, err := c.Lookup(ctxT(t), testClass, emails)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range list {
		ids = append(ids, a.EntityID)
	}
	if requests != 3 || strings.Join(ids, " ") != "shared-assertion own-1 own-2 own-3" {
		t.Fatalf("%d requests, assertions %v; want 3 requests and the shared one once", requests, ids)
	}
}

// Long addresses make smaller batches: no look-up URL is long enough for the host to refuse
// (the sandbox, like gunicorn in front of Badgr, answers 414 above a 4094-byte request line).
func TestListBatchesBoundURLLength(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	var emails []string
	for i := range 20 {
		emails = append(emails, fmt.Sprintf("%s%02d@%s.example.org", strings.Repeat("l", 60), i, strings.Repeat("d", 120)))
	}
	mustAward(t, c, emails[19])
	list, err := c.Lookup(ctxT(t), testClass, emails)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(list) != 1 {
		t.Fatalf("list returned %d assertions, want 1", len(list))
	}
	for _, r := range e.rec.all() {
		if line := len(r.method) + len(r.path) + len(r.rawQuery) + 1 + len(" HTTP/1.1"); line > sandbox.MaxRequestLine {
			t.Errorf("a %d-byte request line", line)
		}
	}
	if n := e.sb.Requests()["GET /v2/badgeclasses/{id}/assertions"]; n < 2 {
		t.Errorf("%d look-ups, want at least 2", n)
	}
}
