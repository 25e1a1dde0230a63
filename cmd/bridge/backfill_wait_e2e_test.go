package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Issue 12: `bridge backfill --yes --wait` follows the rows it queued until the workers settled
// each, then prints what became of them; with no worker it gives up at --timeout, exit 1. Its
// output, not being a terminal, keeps the JSON log lines.
func TestBackfillWait(t *testing.T) {
	bed := newBackfillBed(t, "WaitClass000000000001")
	sb, dir, env := bed.sb, bed.dir, bed.env
	backfill := func(args ...string) (int, string) { return bed.backfill(t, args...) }
	write := func(name, rows string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte("user_id,email,course_key,mode,issued_on\n"+rows), 0o600)
		return p
	}
	first := write("first.csv", "301,a@example.org,course-v1:Old+C1+2019,honor,2019-06-01\n"+
		"302,b@example.org,course-v1:Old+C1+2019,honor,2019-06-01\n"+
		"303,c@example.org,course-v1:Other+X+1,honor,2019-06-01\n")
	if code, out := backfill("--wait", first); code != 2 || !strings.Contains(out, "give --yes too") {
		t.Fatalf("--wait without --yes: exit %d\n%s", code, out)
	}

	// No worker runs: the rows stay pending until the timeout.
	code, out := backfill("--yes", "--wait", "--timeout", "3s", first)
	if code != 1 || !strings.Contains(out, "2 accepted") || !strings.Contains(out, "settle 2 row(s)") ||
		!strings.Contains(out, "2 rows: 0 issued, 0 failed, 0 unchanged, 2 still pending after --timeout 3s") {
		t.Fatalf("without a worker: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, `"msg":"event handled"`) {
		t.Fatalf("stderr is no terminal: the info lines should stay\n%s", out)
	}

	w := start(t, env[1:], "work")
	defer w.Stop(t, 30*time.Second)
	second := write("second.csv", "304,d@example.org,course-v1:Old+C1+2020,honor,2020-06-01\n"+
		"305,e@example.org,course-v1:Old+C1+2020,honor,2020-06-01\n")
	code, out = backfill("--yes", "--wait", "--timeout=60s", second)
	if code != 0 || !strings.Contains(out, "2 rows: 2 issued, 0 failed, 0 unchanged") || strings.Contains(out, "still pending") {
		t.Fatalf("with a worker: exit %d\n%s", code, out)
	}
	if n := len(sb.Assertions("WaitClass000000000001")); n < 2 {
		t.Fatalf("%d assertions after the wait", n)
	}
	// The first file's rows were awarded meanwhile; the file again is all duplicates: nothing to wait for.
	code, out = backfill("--yes", "--wait", first)
	if code != 0 || !strings.Contains(out, "3 duplicate") || !strings.Contains(out, "nothing to wait for") {
		t.Fatalf("again: exit %d\n%s", code, out)
	}
}
