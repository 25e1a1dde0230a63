package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/badgebridge/bridge/internal/testutil"
)

// The dashboard shows no e-mail address anywhere in its API's answers: not in a payload (even
// JSON-escaped), an error message or a task id.
func TestIntegrationDashboardMasksAddresses(t *testing.T) {
	rs := testutil.StartRedis(t)
	conn := asynq.RedisClientOpt{Addr: rs.Addr}
	const queue = "dash"
	const taskID = "other-producer:jane.doe@example.org:1"

	cl := asynq.NewClient(conn)
	defer cl.Close()
	payload := []byte(`{"to":"jane.doe\u0040example.org","cc":"john@example.org"}`)
	if _, err := cl.Enqueue(asynq.NewTask("mail", payload), asynq.TaskID(taskID), asynq.Queue(queue), asynq.MaxRetry(0)); err != nil {
		t.Fatal(err)
	}
	srv := asynq.NewServer(conn, asynq.Config{Queues: map[string]int{queue: 1}, Concurrency: 1, LogLevel: asynq.FatalLevel})
	err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		return errors.New("mailbox jane.doe@example.org refused the message")
	}))
	if err != nil {
		t.Fatal(err)
	}
	ins := asynq.NewInspector(conn)
	defer ins.Close()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if q, err := ins.GetQueueInfo(queue); err == nil && q.Archived == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the task was not archived within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv.Shutdown()

	h, closeDash := Dashboard(conn, token)
	defer closeDash()
	web := httptest.NewServer(h)
	defer web.Close()
	get := func(path string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, web.URL+path, nil)
		req.SetBasicAuth("ops", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		if !json.Valid(body) {
			t.Fatalf("GET %s: not JSON after masking: %s", path, body)
		}
		return string(body)
	}
	list := get(DashboardRoot + "/api/queues/" + queue + "/archived_tasks")
	one := get(DashboardRoot + "/api/queues/" + queue + "/tasks/" + url.PathEscape(taskID))
	for name, body := range map[string]string{"archived list": list, "task": one} {
		if !strings.Contains(body, "refused the message") || !strings.Contains(body, "other-producer") {
			t.Errorf("%s: the task or its error is missing: %s", name, body)
		}
		for _, leak := range []string{"jane", "john", "@", `\u0040`} {
			if strings.Contains(body, leak) {
				t.Errorf("%s shows %q: %s", name, leak, body)
			}
		}
	}
}
