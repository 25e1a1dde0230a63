package badgr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/badgr/wire"
)

func TestAwardListRevoke(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	ctx := ctxT(t)
	issued := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	expires := issued.AddDate(1, 0, 0)

	a, err := c.Award(ctx, testClass, badgehost.AwardRequest{
		Email: "Learner@Example.org", IssuedOn: issued, Narrative: "Completed DemoX",
		EvidenceURL: "https://lms.example.org/certificates/42", Notify: true, Expires: &expires,
		IdempotencyKey: testClass + ":42:1",
	})
	if err != nil {
		t.Fatalf("award: %v", err)
	}
	if len(a.EntityID) != 22 || a.BadgeClass != testClass || a.Recipient != testEmail || a.Revoked {
		t.Errorf("award returned %+v", a)
	}
	if !a.IssuedOn.Equal(issued) || a.Expires == nil || !a.Expires.Equal(expires) || a.CreatedAt.IsZero() {
		t.Errorf("award times: %+v", a)
	}
	if a.OpenBadgeID != e.srv.URL+"/public/assertions/"+a.EntityID {
		t.Errorf("openBadgeId = %q", a.OpenBadgeID)
	}

	// What went over the wire.
	var award recorded
	for _, r := range e.rec.all() {
		if r.method == http.MethodPost && strings.HasSuffix(r.path, "/assertions") {
			award = r
		}
	}
	if award.header.Get("Idempotency-Key") != testClass+":42:1" || award.header.Get("Accept") != "application/json" ||
		award.header.Get("Content-Type") != "application/json" {
		t.Errorf("award headers: %v", award.header)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(award.body), &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"recipient":            map[string]any{"identity": testEmail, "type": "email", "hashed": true},
		"issuedOn":             "2024-05-01T12:00:00Z",
		"narrative":            "Completed DemoX",
		"evidence":             []any{map[string]any{"url": "https://lms.example.org/certificates/42"}},
		"notify":               true,
		"expires":              "2025-05-01T12:00:00Z",
		"allowDuplicateAwards": false,
	}
	if fmt.Sprint(body) != fmt.Sprint(want) {
		t.Errorf("award body\n got %v\nwant %v", body, want)
	}

	list, err := c.Lookup(ctx, testClass, []string{"LEARNER@example.org", "other@example.org", "learner@example.org"})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(list) != 1 || list[0].EntityID != a.EntityID || list[0].Recipient != testEmail {
		t.Fatalf("list = %+v", list)
	}
	var listReq recorded
	for _, r := range e.rec.all() {
		if r.method == http.MethodGet {
			listReq = r
		}
	}
	if listReq.rawQuery != "include_expired=1&num=100&recipient=learner%40example.org&recipient=other%40example.org" {
		t.Errorf("list query = %s", listReq.rawQuery)
	}

	if err := c.Revoke(ctx, a.EntityID, "Certificate revoked in Open edX"); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	list, err = c.Lookup(ctx, testClass, []string{testEmail})
	if err != nil || len(list) != 0 {
		t.Fatalf("list after revoke = %+v, %v", list, err)
	}
	all := e.sb.Assertions(testClass)
	if len(all) != 1 || !all[0].Revoked || all[0].RevocationReason != "Certificate revoked in Open edX" {
		t.Errorf("sandbox holds %+v", all)
	}

	// No e-mails: no call at all.
	before := e.sb.Requests()
	if got, err := c.Lookup(ctx, testClass, []string{" ", ""}); got != nil || err != nil {
		t.Errorf("empty list = %v, %v", got, err)
	}
	if after := e.sb.Requests(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("empty list called the host: %v → %v", before, after)
	}
}

func TestAwardDuplicate(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	first := mustAward(t, c, testEmail)
	_, err := c.Award(ctxT(t), testClass, badgehost.AwardRequest{Email: testEmail})
	if !errors.Is(err, badgehost.ErrAlreadyAwarded) {
		t.Fatalf("second award: %v, want ErrAlreadyAwarded", err)
	}
	// A revoked award does not block a new one.
	if err := c.Revoke(ctxT(t), first.EntityID, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Award(ctxT(t), testClass, badgehost.AwardRequest{Email: testEmail}); err != nil {
		t.Fatalf("award after revoke: %v", err)
	}
}

// The host's duplicate check compares the identity as sent with the stored lowercased one. The
// sandbox reproduces that; the client defeats it by lowercasing.
func TestCaseCaveat(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	a := mustAward(t, c, "Learner@Example.ORG")
	if a.Recipient != testEmail {
		t.Errorf("recipient = %q", a.Recipient)
	}
	_, err := c.Award(ctxT(t), testClass, badgehost.AwardRequest{Email: "LEARNER@EXAMPLE.ORG"})
	if !errors.Is(err, badgehost.ErrAlreadyAwarded) {
		t.Fatalf("upper-case award through the client: %v, want ErrAlreadyAwarded", err)
	}

	// A client that does not lowercase gets a second assertion from the host.
	tok, err := c.accessToken(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"recipient":{"identity":"LEARNER@EXAMPLE.ORG"},"allowDuplicateAwards":false}`
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v2/badgeclasses/"+testClass+"/assertions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok.Access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("raw upper-case award: %d, want 201 (the caveat)", resp.StatusCode)
	}
	list, err := c.Lookup(ctxT(t), testClass, []string{"Learner@example.org"})
	if err != nil || len(list) != 2 {
		t.Fatalf("list = %d assertions, %v; want 2", len(list), err)
	}
}

func TestListPagination(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	// 230 assertions for the learner (the sandbox allows duplicates by default), 7 revoked, 5
	// expired, and some for someone else; made with batch awards and one batch revoke.
	tok, err := c.accessToken(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	var items []string
	for i := range 230 {
		item := `{"recipient":{"identity":"` + testEmail + `"}`
		if i%40 == 0 {
			item += `,"expires":"` + past + `"`
		}
		items = append(items, item+"}")
	}
	for range 20 {
		items = append(items, `{"recipient":{"identity":"someone@example.org","hashed":false}}`)
	}
	var made []wire.Assertion
	for chunk := range slices.Chunk(items, maxBatch) { // the sandbox takes no more per batch
		var answer struct {
			Result []wire.Assertion `json:"result"`
		}
		postJSON(t, tok.Access, e.srv.URL+"/v2/badgeclasses/"+testClass+"/issue", `{"assertions":[`+strings.Join(chunk, ",")+`]}`, http.StatusCreated, &answer)
		made = append(made, answer.Result...)
	}
	var revoked []string
	for i := range 230 {
		if i%33 == 1 {
			revoked = append(revoked, `{"entityId":"`+made[i].EntityID+`","revocationReason":"test"}`)
		}
	}
	postJSON(t, tok.Access, e.srv.URL+"/v2/assertions/revoke", "["+strings.Join(revoked, ",")+"]", http.StatusOK, nil)
	before := e.sb.Requests()["GET /v2/badgeclasses/{id}/assertions"]

	list, err := c.Lookup(ctxT(t), testClass, []string{testEmail})
	if err != nil {
		t.Fatal(err)
	}
	if want := 230 - len(revoked); len(list) != want {
		t.Fatalf("list returned %d assertions, want %d", len(list), want)
	}
	seen := map[string]bool{}
	for i, a := range list {
		if seen[a.EntityID] || a.Revoked || a.Recipient != testEmail {
			t.Fatalf("entry %d: %+v (duplicate %v)", i, a, seen[a.EntityID])
		}
		seen[a.EntityID] = true
		if i > 0 && !a.CreatedAt.Before(list[i-1].CreatedAt) {
			t.Fatalf("not newest first at %d", i)
		}
	}
	if n := e.sb.Requests()["GET /v2/badgeclasses/{id}/assertions"] - before; n != 3 {
		t.Errorf("%d list pages fetched, want 3", n)
	}
}

// postJSON posts body straight to the sandbox with an access token and decodes the answer.
func postJSON(t *testing.T, token, url, body string, wantStatus int, out any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != wantStatus {
		t.Fatalf("POST %s: %d, want %d", req.URL.Path, resp.StatusCode, wantStatus)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
}

func TestListRefusesForeignLink(t *testing.T) {
	e := newEnv(t)
	// A front that adds a Link to another host (and an http:// link to our own host).
	var foreign bool
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/assertions") && r.URL.Query().Get("cursor") == "" {
			if foreign {
				w.Header().Set("Link", `<https://evil.example.net/v2/badgeclasses/x/assertions?cursor=abc>; rel="next"`)
			} else {
				w.Header().Set("Link", `<`+r.URL.Path+`?cursor=relative&num=100&recipient=x>; rel=next`)
			}
		}
		e.sb.ServeHTTP(w, r)
	}))
	defer front.Close()
	c := e.client(func(cfg *Config) { cfg.BaseURL = front.URL })
	mustAward(t, c, testEmail)

	// A relative link is followed on the same host; the sandbox answers its cursor with 404.
	_, err := c.Lookup(ctxT(t), testClass, []string{testEmail})
	var he *HostError
	if !errors.As(err, &he) || he.Status != http.StatusNotFound {
		t.Fatalf("relative link: %v", err)
	}
	foreign = true
	_, err = c.Lookup(ctxT(t), testClass, []string{testEmail})
	if err == nil || !strings.Contains(err.Error(), "another host") {
		t.Fatalf("foreign link: %v", err)
	}
	for _, r := range e.rec.all() {
		if strings.Contains(r.rawQuery, "cursor=abc") {
			t.Fatal("followed the foreign link")
		}
	}
}

func TestNextPageKeepsSchemeAndHost(t *testing.T) {
	c := New(Config{BaseURL: "https://api.badgr.io"}, nil, nil)
	got, err := c.nextPage("https://api.badgr.io/v2/badgeclasses/x/assertions?num=100",
		[]string{`<http://API.badgr.io:8000/v2/badgeclasses/x/assertions?cursor=c1&num=100>; rel="next"`})
	if err != nil || got != "https://api.badgr.io/v2/badgeclasses/x/assertions?cursor=c1&num=100" {
		t.Fatalf("nextPage = %q, %v", got, err)
	}
	if got, err := c.nextPage("https://api.badgr.io/x", []string{`<https://api.badgr.io/p>; rel="prev"`}); got != "" || err != nil {
		t.Fatalf("no next: %q, %v", got, err)
	}
}

func TestRevokeAlreadyRevokedAndUnknown(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	a := mustAward(t, c, testEmail)
	for i := range 2 {
		if err := c.Revoke(ctxT(t), a.EntityID, "duplicate"); err != nil {
			t.Fatalf("revoke %d: %v", i, err)
		}
	}
	if err := c.Revoke(ctxT(t), "doesNotExist000000000A", "duplicate"); err != nil {
		t.Fatalf("revoke unknown: %v", err)
	}
	if n := e.sb.Requests()["DELETE /v2/assertions/{id}"]; n != 3 {
		t.Errorf("%d revoke calls, want 3", n)
	}
	// An empty reason still satisfies Badgr, which requires one.
	b := mustAward(t, c, "other@example.org")
	if err := c.Revoke(ctxT(t), b.EntityID, ""); err != nil {
		t.Fatalf("revoke without reason: %v", err)
	}
	if got := e.sb.Assertions(testClass)[1].RevocationReason; got != revocationDefault {
		t.Errorf("reason = %q", got)
	}
}

func TestBadgeClassExists(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	if ok, err := c.BadgeClassExists(ctxT(t), testClass); !ok || err != nil {
		t.Errorf("existing: %v, %v", ok, err)
	}
	if ok, err := c.BadgeClassExists(ctxT(t), "unknownClass"); ok || err != nil {
		t.Errorf("unknown: %v, %v", ok, err)
	}
}

func TestHostErrorMessages(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	ctx := ctxT(t)

	_, err := c.Award(ctx, testClass, badgehost.AwardRequest{Email: testEmail, IssuedOn: time.Now().Add(time.Hour)})
	var he *HostError
	if !errors.As(err, &he) || !he.Permanent() || he.Retryable() {
		t.Fatalf("future issuedOn: %#v", err)
	}
	if want := "badgr award: 400 bad request: Only issuedOn dates in the past are acceptable."; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}

	_, err = c.Award(ctx, testClass, badgehost.AwardRequest{Email: "not-an-address"})
	if err == nil || err.Error() != "badgr award: 400 bad request: recipient: Enter a valid email address." {
		t.Errorf("bad e-mail: %v", err)
	}

	_, err = c.Award(ctx, "unknownClass", badgehost.AwardRequest{Email: testEmail})
	if !errors.As(err, &he) || he.Status != 404 || !he.Permanent() ||
		err.Error() != "badgr award: 404 entity not found or insufficient privileges" {
		t.Errorf("unknown class: %v", err)
	}
	assertNoSecrets(t, err)
}

func TestServerErrorsAreRetryable(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	mustAward(t, c, "warmup@example.org") // log in first
	cases := []struct {
		status int
		msg    string
	}{
		{500, "badgr list: 500 internal server error: non-JSON answer (text/html)"},
		{502, "badgr list: 502 bad gateway: 502 Bad Gateway"},
		{503, "badgr list: 503 service unavailable: 503 Service Unavailable"},
	}
	for _, tc := range cases {
		e.sb.FailNext(1, tc.status)
		_, err := c.Lookup(ctxT(t), testClass, []string{testEmail})
		var he *HostError
		if !errors.As(err, &he) || he.Status != tc.status || !he.Retryable() || he.Permanent() {
			t.Errorf("%d: %#v", tc.status, err)
			continue
		}
		if err.Error() != tc.msg {
			t.Errorf("%d: error %q, want %q", tc.status, err, tc.msg)
		}
	}
	// Outage: token and API alike.
	e.sb.SetOutage(true)
	_, err := c.Lookup(ctxT(t), testClass, []string{testEmail})
	var he *HostError
	if !errors.As(err, &he) || he.Status != 503 || !he.Retryable() {
		t.Errorf("outage: %v", err)
	}
	e.sb.SetOutage(false)
	if _, err := c.Lookup(ctxT(t), testClass, []string{testEmail}); err != nil {
		t.Errorf("after outage: %v", err)
	}
}

func TestAwardTimeout(t *testing.T) {
	e := newEnv(t)
	c := e.client(func(cfg *Config) { cfg.Timeout = 300 * time.Millisecond })
	if err := c.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	e.sb.SetAwardDelay(2 * time.Second)
	_, err := c.Award(ctxT(t), testClass, badgehost.AwardRequest{Email: testEmail})
	var he *HostError
	if !errors.As(err, &he) || !he.Timeout || he.Status != 0 || !he.Retryable() {
		t.Fatalf("award: %#v", err)
	}
	assertNoSecrets(t, err)
	if got := e.sb.Assertions(testClass); len(got) != 1 || got[0].Recipient != testEmail {
		t.Fatalf("sandbox holds %+v, want the assertion the timed-out call created", got)
	}
	e.sb.SetAwardDelay(0)
	list, err := c.Lookup(ctxT(t), testClass, []string{testEmail})
	if err != nil || len(list) != 1 {
		t.Fatalf("list after timeout: %v, %v", list, err)
	}
}

func TestConnectionErrorHidesURL(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	mustAward(t, c, "warmup@example.org")
	e.srv.CloseClientConnections()
	e.srv.Close()
	_, err := c.Lookup(ctxT(t), testClass, []string{testEmail})
	var he *HostError
	if !errors.As(err, &he) || he.Status != 0 || !he.Retryable() {
		t.Fatalf("list: %#v", err)
	}
	assertNoSecrets(t, err, "learner")
}

func TestCallerCancellation(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	if err := c.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	e.sb.SetLatency(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Lookup(ctx, testClass, []string{testEmail})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("list: %v", err)
	}
}
