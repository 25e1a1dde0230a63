package edx

import (
	"strings"
	"testing"
)

func TestPatternCanMatch(t *testing.T) {
	cases := []struct {
		pattern string
		want    bool
	}{
		{"course-v1:OpenedX+DemoX+*", true},
		{"course-v1:OpenedX+DemoX+2024", true},
		{"course-v1:OpenedX+DemoX*", true}, // * takes "+2024"
		{"course-v1:OpenedX+*", true},
		{"course-v1:*", true},
		{"*", true},
		{"course-v1:DS+Project*+*", true},
		{"ccx-v1:OpenedX+DemoX+2024+ccx@*", true},
		{"ccx-v1:*+ccx@1", true},
		{"edX/DemoX/*", true},
		{"edX/*", true},
		{"course-v1:Universität+Kurs_1+*", true},
		{"course-v1:mit.eecs+6.002x~a+2014:T2-x", true},

		{"course-v1:OpenedX+DemoX", false}, // no run: the mistake issue 12 names
		{"course-v1:OpenedX", false},
		{"course-v1:OpenedX+DemoX+", false},
		{"course-v1:OpenedX+DemoX+2024+*", false}, // a fourth part (or a branch/version qualifier)
		{"course-v1:OpenedX++*", false},
		{"course-v1:Open edX+*", false},
		{"course-v1:OpenedX+Demo/X+*", false},
		{"OpenedX+DemoX+*", false}, // no namespace, and not the slash form either
		{"course-v2:OpenedX+DemoX+*", false},
		{"Course-v1:OpenedX+DemoX+*", false}, // namespaces are case-sensitive
		{"ccx-v1:OpenedX+DemoX+2024", false},
		{"ccx-v1:OpenedX+DemoX+2024+ccx@x*", false},
		{"edX/DemoX", false},
		{"edX/Demo~X/*", false},
		{"edX/DemoX/Run:1", false},
		{"course-v1:" + strings.Repeat("a", 250) + "+b+*", false}, // over 255 bytes whatever * takes
		{"course-v1:\xff+B+*", false},
	}
	for _, c := range cases {
		if got := PatternCanMatch(c.pattern); got != c.want {
			t.Errorf("PatternCanMatch(%q) = %v, want %v", c.pattern, got, c.want)
		}
	}
}

// A pattern without a wildcard can match exactly when it is a valid key itself; and every valid
// key with any part of it replaced by * can still match (the key itself does).
func TestPatternCanMatchAgreesWithParseCourseKey(t *testing.T) {
	keys := []string{
		"course-v1:OpenedX+DemoX+Demo_Course", "course-v1:mit.eecs+6.002x~a+2014:T2-x",
		"course-v1:Universität+Kurs_1+2024", "edX/DemoX/Demo_Course", "edX/Demo.X/2013%20Spring",
		"ccx-v1:OpenedX+DemoX+Demo_Course+ccx@3", "course-v1:a+b+c", "a/b/c",
	}
	bad := []string{
		"x", "course-v1:OpenedX+DemoX", "course-v1:OpenedX+DemoX+Demo+Extra", "course-v1:OpenedX++Demo",
		"edX/DemoX", "a/b/c:d", "ccx-v1:a+b+c+ccx@", "ccx-v1:a+b+c+ccx@1x", "ccx-v1:a+b+c+CCX@1",
	}
	for _, k := range keys {
		if _, err := ParseCourseKey(k); err != nil {
			t.Fatalf("test key %q: %v", k, err)
		}
		if !PatternCanMatch(k) {
			t.Errorf("valid key %q cannot match itself", k)
		}
		// Cut at character boundaries: a mapping file is UTF-8 (YAML), so its patterns are.
		var cuts []int
		for i := range k {
			cuts = append(cuts, i)
		}
		cuts = append(cuts, len(k))
		for a, i := range cuts {
			for _, j := range cuts[a:] {
				p := k[:i] + "*" + k[j:]
				if !PatternCanMatch(p) {
					t.Fatalf("%q (from %q) cannot match", p, k)
				}
			}
		}
	}
	for _, k := range bad {
		if _, err := ParseCourseKey(k); err == nil {
			t.Fatalf("test key %q parses", k)
		}
		if PatternCanMatch(k) {
			t.Errorf("invalid key %q can match", k)
		}
	}
}

// Without a wildcard, PatternCanMatch is ParseCourseKey's verdict on the same text.
func FuzzPatternCanMatch(f *testing.F) {
	for _, s := range []string{"course-v1:OpenedX+DemoX+Demo_Course", "course-v1:OpenedX+DemoX", "edX/DemoX/x",
		"ccx-v1:a+b+c+ccx@12", "a/b/c:d", "course-v1:a:b+c+d", "course-v1:a+b+c+branch@x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsRune(s, PatternWildcard) || strings.TrimSpace(s) != s || s == "" {
			return
		}
		_, err := ParseCourseKey(s)
		if got := PatternCanMatch(s); got != (err == nil) {
			t.Fatalf("PatternCanMatch(%q) = %v, ParseCourseKey error %v", s, got, err)
		}
	})
}
