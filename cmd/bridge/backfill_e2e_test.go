package main

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/sandbox"
	"github.com/badgebridge/bridge/internal/testutil"
)

// backfillBed is what `bridge backfill` runs against in these tests: a Redis, a sandbox badge
// host with badgeClass, a mapping of course-v1:Old+C1+* to it, and the environment naming them.
type backfillBed struct {
	db  *testutil.RedisServer
	sb  *sandbox.Host
	dir string
	env []string
}

func newBackfillBed(t *testing.T, badgeClass string) *backfillBed {
	b := &backfillBed{db: testutil.StartRedis(t), dir: t.TempDir()}
	b.sb = sandbox.New(sandbox.Options{Username: "svc", Password: "pw-0123456789", BadgeClasses: []string{badgeClass}})
	host := httptest.NewServer(b.sb)
	t.Cleanup(host.Close)
	mapping := filepath.Join(b.dir, "m.yaml")
	os.WriteFile(mapping, []byte("badges:\n  - name: Old course\n    badge_class: "+badgeClass+"\n    when:\n      courses: [\"course-v1:Old+C1+*\"]\n"), 0o600)
	b.env = []string{"PATH=" + os.Getenv("PATH"), "BRIDGE_REDIS_URL=" + b.db.URL, "BRIDGE_BADGR_URL=" + host.URL,
		"BRIDGE_BADGR_USERNAME=svc", "BRIDGE_BADGR_PASSWORD=pw-0123456789", "BRIDGE_MAPPING_FILE=" + mapping,
		"BRIDGE_BADGR_TIMEOUT=2s", "BRIDGE_SETTLE=2s", "BRIDGE_SHUTDOWN_GRACE=5s"}
	return b
}

// backfill runs `bridge backfill args…` and returns its exit code and combined output.
func (b *backfillBed) backfill(t *testing.T, args ...string) (int, string) {
	cmd := exec.Command(testutil.Bridge(t), append([]string{"backfill"}, args...)...)
	cmd.Env = b.env
	out, _ := cmd.CombinedOutput()
	return cmd.ProcessState.ExitCode(), string(out)
}

func TestBackfill(t *testing.T) {
	bed := newBackfillBed(t, "FillClass000000000001")
	db, sb, dir, env := bed.db, bed.sb, bed.dir, bed.env
	backfill := func(args ...string) (int, string) { return bed.backfill(t, args...) }
	csv := filepath.Join(dir, "certs.csv")
	os.WriteFile(csv, []byte("user_id,email,course_key,mode,issued_on,name\n"+
		"201,first@example.org,course-v1:Old+C1+2019,verified,2019-06-01,First\n"+
		"202,second@example.org,course-v1:Old+C1+2019,honor,2019-06-02 10:00:00+00:00,Second\n"+
		"203,third@example.org,course-v1:Other+X+1,honor,2019-06-02,Third\n"+
		"oops,bad,course-v1:Old+C1+2019,honor,2019-06-02,Bad\n"), 0o600)
	code, out := backfill(csv)
	if code != 0 || !strings.Contains(out, "Dry run") || strings.Count(out, "would hold FillClass000000000001") != 2 || !strings.Contains(out, ":5:") {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "@") {
		t.Fatalf("the report shows an e-mail address:\n%s", out)
	}
	if n, _ := db.Client(t).DBSize(context.Background()).Result(); n != 0 {
		t.Fatalf("a dry run wrote %d keys", n)
	}
	if code, out = backfill("--yes", csv); code != 0 || !strings.Contains(out, "2 accepted, 0 unchanged, 0 duplicate, 1 ignored") {
		t.Fatalf("--yes: exit %d\n%s", code, out)
	}
	if code, out = backfill("--yes", csv); code != 0 || !strings.Contains(out, "0 accepted, 0 unchanged, 3 duplicate") {
		t.Fatalf("second --yes: exit %d\n%s", code, out)
	}
	w := start(t, env[1:], "work")
	deadline := time.Now().Add(20 * time.Second)
	for len(sb.Assertions("FillClass000000000001")) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("backfilled awards not made: %d", len(sb.Assertions("FillClass000000000001")))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(sb.Assertions("FillClass000000000001")); n != 2 {
		t.Fatalf("%d assertions, want 2", n)
	}
	w.Stop(t, 30*time.Second)
}
