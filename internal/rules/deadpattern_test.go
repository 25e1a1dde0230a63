package rules

import (
	"os"
	"strings"
	"testing"
)

// Course patterns that no valid course key can match are warnings (issue 12), with their line;
// they do not stop the mapping from loading.
func TestDeadPatternsWarn(t *testing.T) {
	src := `badges:
  - name: Demo
    badge_class: Demo0000000000000000001
    when:
      courses:
        - course-v1:OpenedX+DemoX
        - course-v1:OpenedX+DemoX+*
        - course-v1:OpenedX+Other*
        - OpenedX+DemoX+*
  - name: Path
    badge_class: Path0000000000000000001
    when:
      milestone:
        all_of:
          - courses: ["course-v1:DS+Intro+*"]
          - courses: ["DS+Stats+*"]
`
	m, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []problem{
		{6, `when.courses: "course-v1:OpenedX+DemoX" can never match a course key: expected course-v1:ORG+COURSE+RUN; did you mean "course-v1:OpenedX+DemoX+*"?`},
		{9, `when.courses: "OpenedX+DemoX+*" can never match a course key (course-v1:ORG+COURSE+RUN, ccx-v1:ORG+COURSE+RUN+ccx@N or ORG/COURSE/RUN)`},
		{16, `when.milestone.all_of[1].courses: "DS+Stats+*" can never match a course key`},
	}
	if len(m.Warnings) != len(want) {
		t.Fatalf("warnings: %v", m.Warnings)
	}
	for i, w := range want {
		if m.Warnings[i].Line != w.line || !strings.HasPrefix(m.Warnings[i].Message, w.text) {
			t.Errorf("warning %d = %v, want line %d: %s", i, m.Warnings[i], w.line, w.text)
		}
	}
	if got := m.WarningLines(); len(got) != 3 || got[0] != "line 6: "+want[0].text {
		t.Errorf("WarningLines = %q", got)
	}
	// Loaded from a file, each line names it.
	path := t.TempDir() + "/m.yaml"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	lm, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := lm.WarningLines(); len(got) != 3 || !strings.HasPrefix(got[0], path+": line 6: ") {
		t.Errorf("WarningLines of a loaded file = %q", got)
	}
	// The shipped examples have no such pattern.
	for _, f := range []string{"testdata/mapping.yaml", "../../examples/mapping-pathways.yaml"} {
		if m, err := Load(f); err != nil || len(m.Warnings) != 0 {
			t.Errorf("%s: %v %v", f, err, m.WarningLines())
		}
	}
}
