package rules

// ruleNamed finds a rule by name, nil when there is none.
func ruleNamed(m *Mapping, name string) *Rule {
	if m == nil {
		return nil
	}
	for _, r := range m.Rules {
		if r.Name == name {
			return r
		}
	}
	return nil
}
