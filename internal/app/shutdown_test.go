package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/config"
	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/queue"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/sandbox"
	"github.com/badgebridge/bridge/internal/testutil"
)

const (
	shutdownClass = "ClassShutdown-00000001"
	shutdownToken = "shutdown-webhook-token-0123456789abcdef"
	// shutdownHostPassword is the sandbox badge host's test password.
	shutdownHostPassword = "pw-0123456789abcdef"
	shutdownMap          = "badges:\n  - name: cert\n    badge_class: " + shutdownClass +
		"\n    when:\n      courses: [\"course-v1:OpenedX+DemoX+*\"]\n"
)

// slowHost is the sandbox with slow revocations (each just under the client timeout), so a job
// that revokes several duplicates stays in flight for longer than the grace. It counts look-ups.
type slowHost struct {
	sandbox *sandbox.Host
	lists   atomic.Int64
	revokes chan struct{} // receives once when a revocation starts
	release chan struct{} // closed when the test ends
}

func (h *slowHost) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/assertions"):
		h.lists.Add(1)
	case r.Method == http.MethodDelete:
		select {
		case h.revokes <- struct{}{}:
		default:
		}
		select {
		case <-time.After(800 * time.Millisecond):
		case <-r.Context().Done():
			return
		case <-h.release:
			return
		}
	}
	h.sandbox.ServeHTTP(w, r)
}

// plant creates an assertion on the sandbox directly, as a legacy integration would.
func plant(t *testing.T, sb *sandbox.Host, email string) {
	t.Helper()
	form := url.Values{"grant_type": {"password"}, "username": {"svc"}, "password": {shutdownHostPassword}, "client_id": {"public"}}
	req := httptest.NewRequest(http.MethodPost, "/o/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	sb.ServeHTTP(rec, req)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %s", rec.Body.String())
	}
	body := `{"recipient": {"identity": "` + email + `", "type": "email"}}`
	req = httptest.NewRequest(http.MethodPost, "/v2/badgeclasses/"+shutdownClass+"/assertions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	rec = httptest.NewRecorder()
	sb.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated && rec.Code != http.StatusOK {
		t.Fatalf("plant: %d %s", rec.Code, rec.Body.String())
	}
}

// Item 6 of issue 7: on SIGTERM the bridge takes no new job, then drains the listeners and the
// jobs in flight side by side, within one BRIDGE_SHUTDOWN_GRACE; a job still running at the end
// goes back to the queue.
func TestShutdownSpendsOneGrace(t *testing.T) {
	const grace = 2 * time.Second
	db := testutil.StartRedis(t)
	rdb := db.Client(t)
	sb := sandbox.New(sandbox.Options{Username: "svc", Password: shutdownHostPassword, BadgeClasses: []string{shutdownClass}})
	host := &slowHost{sandbox: sb, revokes: make(chan struct{}, 1), release: make(chan struct{})}
	hs := httptest.NewServer(host)
	defer hs.Close()
	defer close(host.release)
	sb.SetBaseURL(hs.URL)
	// Six copies of the learner's badge: the job keeps one and revokes five, 800 ms each.
	for range 6 {
		plant(t, sb, "alice@example.com")
	}

	dir := t.TempDir()
	mappingFile := filepath.Join(dir, "mapping.yaml")
	if err := os.WriteFile(mappingFile, []byte(shutdownMap), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"BRIDGE_HTTP_ADDR": "127.0.0.1:0", "BRIDGE_ADMIN_ADDR": "127.0.0.1:0", "BRIDGE_REDIS_URL": db.URL,
		"BRIDGE_BADGR_URL": hs.URL, "BRIDGE_BADGR_USERNAME": "svc", "BRIDGE_BADGR_PASSWORD": shutdownHostPassword,
		"BRIDGE_BADGR_TIMEOUT": "1s", "BRIDGE_MAPPING_FILE": mappingFile, "BRIDGE_WEBHOOK_TOKENS": shutdownToken,
		"BRIDGE_WORKER_CONCURRENCY": "2", "BRIDGE_SHUTDOWN_GRACE": grace.String(), "BRIDGE_LOG_LEVEL": "warn",
	}
	cfg, err := config.LoadFrom(context.Background(), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	a := New(cfg, CmdRun, slog.New(slog.DiscardHandler), nil)
	ctx, sigterm := context.WithCancel(context.Background())
	defer sigterm()
	ran := make(chan error, 1)
	go func() { ran <- a.Run(ctx) }()
	select {
	case <-a.Ready:
	case err := <-ran:
		t.Fatalf("bridge did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("bridge did not start")
	}

	// A job that outlasts the grace: it revokes the duplicates one by one.
	body, err := os.ReadFile("../edx/testdata/certificate-created.json")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+a.HTTPAddr+"/v1/webhooks/openedx", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+shutdownToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook answered %d", resp.StatusCode)
	}
	select {
	case <-host.revokes:
	case <-time.After(20 * time.Second):
		t.Fatal("the reconcile job never started revoking the duplicates")
	}

	// A webhook in flight that outlasts the grace: its body trickles.
	conn, err := net.Dial("tcp", a.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/webhooks/openedx HTTP/1.1\r\nHost: bridge\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", shutdownToken, len(body), body[:10])
	time.Sleep(300 * time.Millisecond)

	sigterm()
	start := time.Now()
	// Work that arrives after SIGTERM waits in the queue: no worker takes it.
	time.Sleep(300 * time.Millisecond)
	late := lateJob(t, rdb, mappingFile)

	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * grace):
		t.Fatal("Run did not return after SIGTERM")
	}
	took := time.Since(start)
	t.Logf("shutdown took %s with a %s grace", took, grace)
	if took > grace*16/10 {
		t.Fatalf("shutdown took %s: more than one grace (%s) spent", took, grace)
	}
	if took < grace*9/10 {
		t.Fatalf("shutdown took %s: the job in flight did not get its grace (%s)", took, grace)
	}
	if n := host.lists.Load(); n != 1 {
		t.Fatalf("%d look-ups on the host, want only the first job's: a job started after SIGTERM", n)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	q, err := insp.GetQueueInfo(queue.Queue)
	if err != nil {
		t.Fatal(err)
	}
	if q.Active != 0 || q.Pending != 2 || q.Archived != 0 {
		t.Fatalf("queue after shutdown: pending %d active %d archived %d; want the stalled job handed back and %s still waiting",
			q.Pending, q.Active, q.Archived, late)
	}
}

// lateJob records a certificate for another learner and queues its reconcile, as a webhook
// replica that is still running would.
func lateJob(t *testing.T, rdb *redis.Client, mappingFile string) ledger.RowKey {
	t.Helper()
	m, err := rules.Load(mappingFile)
	if err != nil {
		t.Fatal(err)
	}
	l := ledger.New(rdb, ledger.Options{})
	in := &intake.Intake{Ledger: l, Mapping: m, Enqueuer: queue.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), l, time.Minute)}
	key, _ := edx.ParseCourseKey("course-v1:OpenedX+DemoX+Demo_Course")
	ev := edx.Event{ID: "late-1", Type: edx.TypeCertificateCreated, Kind: edx.KindCertificate, Time: time.Now().Add(-time.Minute),
		UserID: 43, Email: "late@example.org", Course: key, Mode: "honor", Status: "downloadable"}
	res, err := in.Handle(context.Background(), ev, "test")
	if err != nil || res.Status != intake.StatusAccepted {
		t.Fatalf("late intake: %+v %v", res, err)
	}
	return ledger.RowKey{BadgeClass: shutdownClass, UserID: 43}
}
