package rules

import "testing"

func TestMatchPattern(t *testing.T) {
	tests := []struct {
		pattern, key string
		want         bool
	}{
		{"course-v1:OpenedX+DemoX+Demo_Course", "course-v1:OpenedX+DemoX+Demo_Course", true},
		{"course-v1:OpenedX+DemoX+Demo_Course", "course-v1:OpenedX+DemoX+Demo_Course2", false},
		{"course-v1:OpenedX+DemoX+Demo_Course", "course-v1:openedx+demox+demo_course", false},
		{"course-v1:OpenedX+DemoX+*", "course-v1:OpenedX+DemoX+2024_T1", true},
		{"course-v1:OpenedX+DemoX+*", "course-v1:OpenedX+DemoX+", true},
		{"course-v1:OpenedX+DemoX+*", "course-v1:OpenedX+DemoXL+2024", false},
		{"course-v1:*+DemoX+*", "course-v1:Other+DemoX+run", true},
		{"*", "", true},
		{"*", "anything at all", true},
		{"**", "x", true},
		{"a*b*c", "abc", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyycd", false},
		{"a*b*c", "acb", false},
		{"*x", "xxxx", true},
		{"", "", true},
		{"", "x", false},
		// + and . are literal, not regexp syntax.
		{"course-v1:A+B+C", "course-v1:AA+B+C", false},
		{"course-v1:A+B+C", "course-v1:A+BB+C", false},
		{"course-v1:A.B+C+D", "course-v1:AxB+C+D", false},
		{"course-v1:A.B+C+D", "course-v1:A.B+C+D", true},
		{"Org/Course/.*", "Org/Course/2013", false},
		{"Org/Course/*", "Org/Course/2013", true},
		{"[ab]*", "a1", false},
		{"[ab]*", "[ab]1", true},
	}
	for _, tt := range tests {
		if got := matchPattern(tt.pattern, tt.key); got != tt.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", tt.pattern, tt.key, got, tt.want)
		}
	}
}
