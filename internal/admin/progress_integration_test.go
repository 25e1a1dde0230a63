package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/testutil"
)

const pathwayMapping = `
badges:
  - name: demo
    badge_class: ClassDemo
    when:
      courses: ["course-v1:OpenedX+DemoX+*"]
  - name: pathway
    badge_class: ClassPathway
    when:
      milestone:
        all_of:
          - courses: ["course-v1:OpenedX+DemoX+*"]
          - courses: ["course-v1:OpenedX+DemoY+*"]
`

// Progress shows a learner's record and where each milestone stands; a preview of the event that
// completes the milestone shows the milestone becoming held, and records nothing.
func TestIntegrationProgressAndMilestonePreview(t *testing.T) {
	ctx := context.Background()
	srv := testutil.StartRedis(t)
	l := ledger.New(srv.Client(t), ledger.Options{})
	m, err := rules.Parse([]byte(pathwayMapping))
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	(&API{Ledger: l, Token: token, Mapping: m}).Register(e.Group(""))

	body, err := os.ReadFile("../edx/testdata/certificate-created.json")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := edx.ParseWebhook(edx.WebhookRequest{ContentType: "application/json", Body: body, Received: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := m.Change(ev, false)
	if _, err := l.Apply(ctx, ledger.Learner{UserID: ev.UserID, Email: "alice@example.com", EmailAt: c.At}, c); err != nil {
		t.Fatal(err)
	}

	rec, got := call(e, "/v1/progress?user_id=42", token)
	if rec.Code != http.StatusOK {
		t.Fatalf("progress: %d %v", rec.Code, got)
	}
	ms := got["milestones"].([]any)
	p := ms[0].(map[string]any)
	if p["met"] != false || len(p["courses"].([]any)) != 1 || !strings.Contains(rec.Body.String(), "OpenedX+DemoY") {
		t.Fatalf("progress: %s", rec.Body)
	}
	if strings.Contains(rec.Body.String(), "alice@example.com") {
		t.Fatal("progress shows the e-mail address")
	}

	second := strings.Replace(string(body), "OpenedX+DemoX+Demo_Course", "OpenedX+DemoY+2024", 1)
	req := httptest.NewRequest(http.MethodPost, "/v1/mapping/preview", strings.NewReader(second))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	e.ServeHTTP(w, req)
	var pv struct {
		Badges []Preview `json:"badges"`
	}
	_ = json.Unmarshal(w.Body.Bytes(), &pv)
	if w.Code != http.StatusOK || len(pv.Badges) != 1 || pv.Badges[0].Rule != "pathway" || pv.Badges[0].Effect != "held" || len(pv.Badges[0].Courses) != 2 {
		t.Fatalf("preview: %d %s", w.Code, w.Body)
	}
	if _, got := call(e, "/v1/progress?user_id=42", token); got["milestones"].([]any)[0].(map[string]any)["met"] != false {
		t.Fatal("the preview recorded the event")
	}
}
