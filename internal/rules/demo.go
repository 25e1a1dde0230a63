package rules

import (
	"fmt"
	"strconv"
)

// demoTemplate is the development-mode mapping, as YAML so that it goes through the same
// validation as an operator's file. %s is the quoted badge class.
const demoTemplate = `badges:
  - name: Demo course completion
    badge_class: %s
    when:
      event: certificate
      courses: ["course-v1:OpenedX+DemoX+*"]
    revoke: true
    narrative: "Completed {{.CourseKey}}"
    evidence_url: "https://lms.example.org/certificates/user/{{.UserID}}/course/{{.CourseKey}}"
`

// Demo is the built-in mapping development mode uses when no mapping file is configured: a
// certificate for any run of the Open edX demo course awards badgeClass. It panics when
// badgeClass is not a valid badge class id; use NewDemo for an id that comes from outside.
func Demo(badgeClass string) *Mapping {
	m, err := NewDemo(badgeClass)
	if err != nil {
		panic(err)
	}
	return m
}

// NewDemo is Demo returning the validation error instead of panicking.
func NewDemo(badgeClass string) (*Mapping, error) {
	m, err := Parse(fmt.Appendf(nil, demoTemplate, strconv.Quote(badgeClass)))
	if err != nil {
		return nil, fmt.Errorf("demo mapping for badge class %q: %w", badgeClass, err)
	}
	return m, nil
}
