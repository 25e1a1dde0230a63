package rules

import "testing"

// The README's worked example of pathways and milestones is a valid mapping.
func TestExamplePathwaysMapping(t *testing.T) {
	m, err := Load("../../examples/mapping-pathways.yaml")
	if err != nil {
		t.Fatal(err)
	}
	milestones := 0
	for _, r := range m.Rules {
		if r.Milestone != nil {
			milestones++
		}
	}
	if len(m.Rules) != 6 || milestones != 4 {
		t.Fatalf("%d rules, %d milestones; want 6 and 4", len(m.Rules), milestones)
	}
	if explorer := ruleNamed(m, "Explorer"); explorer.Revoke {
		t.Error("Explorer says revoke: false")
	}
	if passing := ruleNamed(m, "Passed the foundations"); !passing.Revoke || passing.Milestone.AllOf[0].RevokeAfter == 0 {
		t.Error("the passing milestone revokes after 72 h")
	}
}
