package charttest

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)

const (
	alertsFile     = "../badge-bridge/files/alerts.yaml"
	alertTestsFile = "promtool/alerts_test.yaml"
	runbookFile    = "../../docs/RUNBOOK.md"
)

// promtool finds promtool (Debian: apt-get install prometheus). Without it the test is skipped,
// except under CI (CI=true), where that is a failure, as with redis-server in the service's tests.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is not installed (apt-get install prometheus)")
		}
		t.Skip("promtool is not installed (apt-get install prometheus)")
	}
	return p
}

// promtool check rules and promtool test rules pass on the chart's alert rules.
func TestPromtool(t *testing.T) {
	bin := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", alertsFile},
		{"test", "rules", alertTestsFile},
	} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func alertRules(t *testing.T) []monitoringv1.Rule {
	t.Helper()
	var spec monitoringv1.PrometheusRuleSpec
	if err := decodeStrict(string(readFile(t, alertsFile)), &spec); err != nil {
		t.Fatal(err)
	}
	var rules []monitoringv1.Rule
	for _, g := range spec.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatal("no rules")
	}
	return rules
}

// Every alert has a promtool test where it fires and one where it does not.
func TestEveryAlertIsUnitTested(t *testing.T) {
	var tests struct {
		RuleFiles          []string `json:"rule_files"`
		EvaluationInterval string   `json:"evaluation_interval"`
		Tests              []struct {
			Name          string `json:"name"`
			Interval      string `json:"interval"`
			InputSeries   []any  `json:"input_series"`
			AlertRuleTest []struct {
				EvalTime  string `json:"eval_time"`
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := decodeStrict(string(readFile(t, alertTestsFile)), &tests); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, r := range alertRules(t) {
		if r.Alert == "" {
			continue
		}
		if !fires[r.Alert] {
			t.Errorf("%s: no promtool test where it fires", r.Alert)
		}
		if !quiet[r.Alert] {
			t.Errorf("%s: no promtool test where it does not fire", r.Alert)
		}
	}
}

// Every alert has a severity, a summary, a description, and a runbook_url that points at its
// own section of docs/RUNBOOK.md.
func TestEveryAlertHasARunbookSection(t *testing.T) {
	runbook := string(readFile(t, runbookFile))
	const base = "https://github.com/badgebridge/bridge/blob/main/docs/RUNBOOK.md#"
	for _, r := range alertRules(t) {
		if r.Alert == "" {
			continue
		}
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
		}
		if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("%s: summary or description missing", r.Alert)
		}
		if want := base + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
			t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
		}
		if !regexp.MustCompile(`(?m)^### ` + regexp.QuoteMeta(r.Alert) + `$`).MatchString(runbook) {
			t.Errorf("%s: docs/RUNBOOK.md has no section \"### %s\"", r.Alert, r.Alert)
		}
	}
}
