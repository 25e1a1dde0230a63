package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 12: a course pattern that no valid course key can match is a warning of `bridge check`,
// with its file line and a suggestion; the check still passes.
func TestCheckWarnsAboutPatternsThatNeverMatch(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "m.yaml")
	os.WriteFile(file, []byte("badges:\n  - name: A\n    badge_class: X1\n    when:\n      courses: [\"course-v1:OpenedX+DemoX\", \"course-v1:O+C+*\"]\n"), 0o600)
	t.Setenv("BRIDGE_MAPPING_FILE", file)
	var out, errb bytes.Buffer
	code := run([]string{"check"}, &out, &errb)
	want := file + `: line 5: when.courses: "course-v1:OpenedX+DemoX" can never match a course key: expected course-v1:ORG+COURSE+RUN; did you mean "course-v1:OpenedX+DemoX+*"?`
	if code != 0 || !strings.Contains(errb.String(), "bridge check: warning: "+want) || strings.Count(errb.String(), "warning") != 1 {
		t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
	}
	if !strings.Contains(out.String(), "valid, with 1 warning(s)") {
		t.Fatalf("stdout: %q", out.String())
	}
}
