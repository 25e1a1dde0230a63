package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckReportsMappingLines(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("badges:\n  - name: A\n    badge_class: X1\n    when:\n      courses: [\"course-v1:O+C+*\"]\n    colour: red\n"), 0o600)
	t.Setenv("BRIDGE_MAPPING_FILE", bad)
	var out, errb bytes.Buffer
	if code := run([]string{"check"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "line 6") {
		t.Fatalf("check of a bad mapping: exit %d, stderr %q", code, errb.String())
	}
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("badges:\n  - name: A\n    badge_class: X1\n    when:\n      courses: [\"course-v1:O+C+*\"]\n"), 0o600)
	t.Setenv("BRIDGE_MAPPING_FILE", good)
	out.Reset()
	errb.Reset()
	if code := run([]string{"check"}, &out, &errb); code != 0 {
		t.Fatalf("check of a good mapping: exit %d, %s", code, errb.String())
	}
	t.Setenv("BRIDGE_SETTLE", "forever")
	if code := run([]string{"check"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "BRIDGE_SETTLE") {
		t.Fatalf("check with a bad variable: exit %d, %q", code, errb.String())
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Fatalf("exit %d %q", code, errb.String())
	}
	if code := run([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "bridge ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
}

func TestSecretCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"secret"}, &out, &errb); code != 0 {
		t.Fatalf("secret: exit %d, %q", code, errb.String())
	}
	for _, prefix := range []string{"BRIDGE_WEBHOOK_SECRETS=whsec_", "BRIDGE_WEBHOOK_TOKENS=", "BRIDGE_WEBHOOK_QUERY_TOKENS="} {
		if !strings.Contains(out.String(), "\n"+prefix) {
			t.Fatalf("secret output lacks %s:\n%s", prefix, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"secret", "--bytes=8"}, &out, &errb); code != 2 || out.Len() != 0 {
		t.Fatalf("secret with an argument: exit %d, printed %q", code, out.String())
	}
}
