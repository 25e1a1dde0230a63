package edx

import (
	"strings"
	"testing"
)

func TestParseCourseKey(t *testing.T) {
	tests := []struct {
		in                      string
		style, org, course, run string
		ccx, master             string
	}{
		{in: "course-v1:OpenedX+DemoX+Demo_Course", style: StyleCourseV1, org: "OpenedX", course: "DemoX", run: "Demo_Course"},
		{in: "  course-v1:OpenedX+DemoX+Demo_Course\n", style: StyleCourseV1, org: "OpenedX", course: "DemoX", run: "Demo_Course"},
		{in: "course-v1:mit.eecs+6.002x~a+2014:T2-x", style: StyleCourseV1, org: "mit.eecs", course: "6.002x~a", run: "2014:T2-x"},
		{in: "course-v1:Universität+Kurs_1+2024", style: StyleCourseV1, org: "Universität", course: "Kurs_1", run: "2024"},
		{in: "edX/DemoX/Demo_Course", style: StyleSlash, org: "edX", course: "DemoX", run: "Demo_Course"},
		{in: "edX/Demo.X/2013%20Spring", style: StyleSlash, org: "edX", course: "Demo.X", run: "2013%20Spring"},
		{
			in: "ccx-v1:OpenedX+DemoX+Demo_Course+ccx@3", style: StyleCCXV1, org: "OpenedX", course: "DemoX",
			run: "Demo_Course", ccx: "3", master: "course-v1:OpenedX+DemoX+Demo_Course",
		},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			k, err := ParseCourseKey(tt.in)
			if err != nil {
				t.Fatalf("ParseCourseKey: %v", err)
			}
			if k.Raw != strings.TrimSpace(tt.in) || k.String() != k.Raw {
				t.Errorf("Raw = %q, String() = %q", k.Raw, k.String())
			}
			if k.Style != tt.style || k.Org != tt.org || k.Course != tt.course || k.Run != tt.run || k.CCX != tt.ccx {
				t.Errorf("got %+v", k)
			}
			switch {
			case tt.master == "" && k.Master != nil:
				t.Errorf("Master = %+v, want nil", *k.Master)
			case tt.master != "" && (k.Master == nil || k.Master.Raw != tt.master || k.Master.Style != StyleCourseV1 ||
				k.Master.Org != tt.org || k.Master.Course != tt.course || k.Master.Run != tt.run):
				t.Errorf("Master = %+v, want %s", k.Master, tt.master)
			}
		})
	}
}

func TestParseCourseKeyErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", "course key is empty"},
		{"   ", "course key is empty"},
		{"x", `course key "x": expected course-v1:ORG+COURSE+RUN`},
		{"course-v1:OpenedX+DemoX", `expected course-v1:ORG+COURSE+RUN`},
		{"course-v1:OpenedX+DemoX+Demo+Extra", `expected course-v1:ORG+COURSE+RUN`},
		{"course-v1:OpenedX++Demo", `course is empty`},
		{"course-v1:+DemoX+Demo", `org is empty`},
		{"course-v1:OpenedX+DemoX+", `run is empty`},
		{"course-v1:OpenedX+Demo X+Demo", `course contains ' ', not allowed`},
		{"course-v1:OpenedX+DemoX+Demo%20", `run contains '%'`},
		{"course-v1:OpenedX+DemoX+Demo/1", `run contains '/'`},
		{"course-v1:OpenedX+DemoX+Demo+branch@draft", `branch- or version-qualified keys are not accepted`},
		{"course-v1:OpenedX+DemoX+Demo+version@519665f6223ebd6980884f2b", `branch- or version-qualified`},
		{"library-v1:OpenedX+Lib", `unsupported namespace "library-v1"`},
		{"block-v1:OpenedX+DemoX+Demo+type@html+block@x", `unsupported namespace "block-v1"`},
		{"ccx-v1:OpenedX+DemoX+Demo", `expected ccx-v1:ORG+COURSE+RUN+ccx@N`},
		{"ccx-v1:OpenedX+DemoX+Demo+ccx@", `ccx id "" is not a number`},
		{"ccx-v1:OpenedX+DemoX+Demo+ccx@x1", `ccx id "x1" is not a number`},
		{"ccx-v1:OpenedX+DemoX+Demo+CCX@1", `expected ccx-v1:ORG+COURSE+RUN+ccx@N`},
		{"ccx-v1:OpenedX+DemoX+Demo+branch@b+ccx@1", `branch- or version-qualified`},
		{"edX/DemoX", `expected course-v1:ORG+COURSE+RUN`},
		{"edX/DemoX/Demo/x", `expected course-v1:ORG+COURSE+RUN`},
		{"edX//Demo", `course is empty`},
		{"edX/Demo~X/Demo", `course contains '~'`},
		{"a/b/c:d", `run contains ':'`},
		{"course-v1:" + strings.Repeat("a", 250) + "+b+c", "longer than 255 bytes"},
		{"alice@example.com", "withheld"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			k, err := ParseCourseKey(tt.in)
			if err == nil {
				t.Fatalf("ParseCourseKey(%q) = %+v, want an error", tt.in, k)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "alice@") {
				t.Errorf("error %q repeats an e-mail address", err)
			}
		})
	}
}
