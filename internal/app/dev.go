package app

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/badgebridge/bridge/internal/sandbox"
)

// DemoBadgeClass is the badge class development mode's sandbox host holds and its built-in
// mapping awards.
const DemoBadgeClass = "BadgeBridgeDemoClass-1"

type devSetup struct {
	webhookToken string
	adminToken   string
	sandboxURL   string
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// startSandbox serves an in-process badge host on a loopback port, so development mode goes
// through the same HTTP client as production.
// It holds the demo badge class and every class the mapping names, so a mapping file tried in
// development mode awards too.
func startSandbox(log *slog.Logger, classes []string) (url, user, pass string, stop func(), err error) {
	user, pass = "sandbox", randomToken()
	sb := sandbox.New(sandbox.Options{Username: user, Password: pass, BadgeClasses: append([]string{DemoBadgeClass}, classes...)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", "", nil, fmt.Errorf("start sandbox badge host: %w", err)
	}
	url = "http://" + ln.Addr().String()
	sb.SetBaseURL(url)
	srv := &http.Server{Handler: sb, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Debug("sandbox badge host started", "url", url)
	return url, user, pass, func() { _ = srv.Close() }, nil
}

const sampleEvent = `{"event_metadata": {"event_type": "org.openedx.learning.certificate.created.v1",
  "id": "3e068212-1c24-11ef-9a57-0242ac120005", "minorversion": 0, "source": "openedx/lms/web",
  "sourcehost": "lms-1", "time": "2024-05-27T12:25:45.678901+00:00", "sourcelib": [11, 2, 0]},
 "certificate": {"user": {"id": 42, "is_active": true,
   "pii": {"username": "alice", "email": "alice@example.com", "name": "Alice Liddell"}},
  "course": {"course_key": "course-v1:OpenedX+DemoX+Demo_Course", "display_name": "", "start": null, "end": null},
  "mode": "honor", "grade": "0.87", "download_url": "", "name": "Alice Liddell",
  "current_status": "downloadable", "previous_status": ""}}`

// printDevBanner tells a newcomer what development mode is and how to try it. It goes to the
// terminal, not to the log: the tokens in it are throwaway ones made for this process.
func (a *App) printDevBanner(d *devSetup) {
	if a.banner == nil {
		return
	}
	hostAddr := func(addr string) string {
		if strings.HasPrefix(addr, "[::]") || strings.HasPrefix(addr, "0.0.0.0") || strings.HasPrefix(addr, ":") {
			_, port, _ := net.SplitHostPort(addr)
			return "127.0.0.1:" + port
		}
		return addr
	}
	var b strings.Builder
	line := strings.Repeat("!", 78)
	fmt.Fprintf(&b, "\n%s\n", line)
	fmt.Fprintf(&b, "!! DEVELOPMENT MODE: NOTHING IS DURABLE.\n")
	fmt.Fprintf(&b, "!! The queue and ledger live in an embedded in-memory Redis and vanish on exit.\n")
	if d.sandboxURL != "" {
		fmt.Fprintf(&b, "!! Badges go to an in-process SANDBOX badge host (%s), not to a real one.\n", d.sandboxURL)
	}
	fmt.Fprintf(&b, "!! Set BRIDGE_REDIS_URL and BRIDGE_BADGR_URL for a real deployment.\n%s\n\n", line)
	if d.webhookToken != "" {
		fmt.Fprintf(&b, "Throwaway webhook token: %s\n", d.webhookToken)
	}
	if d.adminToken != "" {
		fmt.Fprintf(&b, "Throwaway admin token:   %s\n", d.adminToken)
	}
	if d.webhookToken != "" && a.HTTPAddr != "" {
		fmt.Fprintf(&b, "\nSend a sample certificate event (paste this into another terminal):\n\n")
		fmt.Fprintf(&b, "curl -sS -X POST http://%s/v1/webhooks/openedx \\\n  -H 'Authorization: Bearer %s' \\\n  -H 'Content-Type: application/json' \\\n  --data '%s'\n",
			hostAddr(a.HTTPAddr), d.webhookToken, strings.ReplaceAll(sampleEvent, "\n", "\n  "))
	}
	if d.adminToken != "" && a.AdminAddr != "" {
		fmt.Fprintf(&b, "\nThen see the award (state \"issued\" within a second or two):\n\n")
		fmt.Fprintf(&b, "curl -sS http://%s/v1/awards -H 'Authorization: Bearer %s'\n\n", hostAddr(a.AdminAddr), d.adminToken)
	}
	fmt.Fprint(a.banner, b.String())
}
