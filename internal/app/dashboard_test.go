package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/testutil"
)

// The Helm chart's Grafana dashboard and alert rules, which query the bridge's /metrics.
const (
	dashboardFile = "../../charts/badge-bridge/files/dashboard.json"
	alertsFile    = "../../charts/badge-bridge/files/alerts.yaml"
)

// Series that are not the bridge's: Prometheus adds `up` to every target it scrapes.
var prometheusSeries = map[string]bool{"up": true}

// Labels that Prometheus, not the bridge, puts on every series: the target's, and those the
// chart's ServiceMonitor copies from the pod (podTargetLabels).
var targetLabels = map[string]bool{
	"namespace": true, "pod": true, "job": true, "instance": true, "service": true, "endpoint": true, "container": true,
	"app_kubernetes_io_part_of": true, "app_kubernetes_io_instance": true, "app_kubernetes_io_component": true,
}

// Every metric the chart's dashboard and alert rules query is one the bridge exposes on its admin
// /metrics, with the labels they filter and group by.
//
// A metric with labels (a CounterVec) has no series, and so is not in the scrape at all, until
// its first observation. Rather than trust the names in the source, the test makes a real `bridge
// run` produce every series: webhooks (accepted, and a 409 for an event id reused with other
// content), an award and a burst of 25 (a batch award), event-bus entries that are processed,
// unsupported, dead-lettered and trimmed before they were read, and announcements that fail on
// the bus before they are published. It then scrapes until every queried name is there.
func TestDashboardAndAlertMetricsExist(t *testing.T) {
	queries := dashboardQueries(t)
	queries = append(queries, alertQueries(t)...)
	want := map[string]map[string]bool{} // metric -> label names the queries use with it
	for i, q := range queries {
		refs, err := scanPromQL(q.expr)
		if err != nil {
			t.Fatalf("%s: %v\n%s", q.where, err, q.expr)
		}
		if len(refs.metrics) == 0 {
			t.Errorf("%s queries no metric: %s", q.where, q.expr)
		}
		queries[i].refs = refs
		for m, ls := range refs.metrics {
			if want[m] == nil {
				want[m] = map[string]bool{}
			}
			for _, l := range ls {
				want[m][l] = true
			}
		}
	}

	bus := testutil.StartRedis(t)
	busc := bus.Client(t)
	ctx := context.Background()
	const certStream = "dev-learning-certificate-lifecycle" // one of the default streams
	const announceStream = "badge-bridge-test-announcements"
	// Entries the producer trims before the bridge's group read them: the group exists (created
	// by an operator, at the start of the stream) and two entries are gone before the bridge runs.
	if err := busc.XGroupCreateMkStream(ctx, certStream, "badge-bridge", "0").Err(); err != nil {
		t.Fatal(err)
	}
	xadd(t, busc, certStream, edx.TypeCertificateCreated, "trimmed-1", avroCert(t, 1001, "trimmed-1"))
	xadd(t, busc, certStream, edx.TypeCertificateCreated, "trimmed-2", avroCert(t, 1002, "trimmed-2"))
	if err := busc.XTrimMaxLen(ctx, certStream, 0).Err(); err != nil {
		t.Fatal(err)
	}
	xadd(t, busc, certStream, edx.TypeCertificateCreated, "bus-1", avroCert(t, 1003, "bus-1"))              // processed
	xadd(t, busc, certStream, "org.openedx.learning.badge.awarded.v1", "bus-2", []byte("not decoded"))      // unsupported
	xadd(t, busc, certStream, edx.TypeCertificateCreated, "bus-3", []byte("\xff\xff not avro at all \x00")) // dead-lettered
	// Announcements fail on the bus while their stream's key holds a string.
	if err := busc.Set(ctx, announceStream, "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}

	const token = "webhook-token-0123456789abcdef0123456789"
	a := start(t, loadConfig(t, map[string]string{
		"BRIDGE_DEV": "true", "BRIDGE_EVENTBUS_REDIS_URL": bus.URL, "BRIDGE_EVENTBUS_BADGE_STREAM": announceStream,
		"BRIDGE_WEBHOOK_TOKENS": token, "BRIDGE_ADMIN_TOKEN": "admin-token-0123456789abcdef0123456789",
	}), CmdRun, io.Discard)
	post := func(body string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+a.HTTPAddr+"/v1/webhooks/openedx", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(certEvent("dash-1", 42)); code != http.StatusOK {
		t.Fatalf("sample event: %d", code)
	}
	if code := post(strings.Replace(certEvent("dash-1", 42), `"0.87"`, `"0.55"`, 1)); code != http.StatusConflict {
		t.Fatalf("event id reused with other content: %d, want 409", code)
	}
	var wg sync.WaitGroup // a burst of one badge class: a bulk run and a batch award
	for i := range 25 {
		wg.Go(func() {
			if code := post(certEvent(fmt.Sprintf("dash-burst-%d", i), int64(2000+i))); code != http.StatusOK {
				t.Errorf("burst event %d: %d", i, code)
			}
		})
	}
	wg.Wait()

	var s *scrape
	deadline := time.Now().Add(60 * time.Second)
	repaired := false
	for {
		s = scrapeMetrics(t, "http://"+a.AdminAddr+"/metrics")
		if !repaired && s.has("bridge_announce_failures_total") {
			// The publisher failed on the bus; fix the stream so that the next cycle publishes.
			if err := busc.Del(ctx, announceStream).Err(); err != nil {
				t.Fatal(err)
			}
			repaired = true
		}
		if len(missing(s, want)) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, m := range missing(s, want) {
		t.Errorf("queried by the dashboard or an alert, but not exposed by the bridge's /metrics: %s", m)
	}
	for m, ls := range want {
		for l := range ls {
			if !targetLabels[l] && !prometheusSeries[m] && s.has(m) && !s.labels[m][l] {
				t.Errorf("%s is queried with the label %q, which the bridge does not expose on it (it has %v)", m, l, keys(s.labels[m]))
			}
		}
	}
	for _, q := range queries {
		for _, l := range q.refs.grouping {
			if targetLabels[l] {
				continue
			}
			found := false
			for m := range q.refs.metrics {
				found = found || s.labels[m][l]
			}
			if !found {
				t.Errorf("%s groups or joins by %q, a label none of its metrics has: %s", q.where, l, q.expr)
			}
		}
	}
	t.Logf("%d queries of the dashboard and the alerts read %d metrics: %v", len(queries), len(want), keys(wantNames(want)))
	promtoolCheckMetrics(t, s.raw)
}

func wantNames(want map[string]map[string]bool) map[string]bool {
	out := map[string]bool{}
	for m := range want {
		out[m] = true
	}
	return out
}

// query is one PromQL expression and where it comes from.
type query struct {
	where, expr string
	refs        promqlRefs
}

// dashboardQueries collects every target expression of the dashboard (rows' panels included) and
// the metric selectors of its label_values() variables.
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels     []dashPanel
		Templating struct {
			List []struct {
				Name, Type string
				Query      json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []query
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("dashboard panel %q: target %s has no expr", p.Title, tg.RefID)
					continue
				}
				out = append(out, query{where: fmt.Sprintf("dashboard panel %q (%s)", p.Title, tg.RefID), expr: tg.Expr})
			}
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("dashboard panel %q queries nothing", p.Title)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			_ = json.Unmarshal(v.Query, &q.Query) // older dashboards: the query as a string
		}
		m := labelValues.FindStringSubmatch(strings.TrimSpace(q.Query))
		if m == nil {
			t.Errorf("dashboard variable %s: query %q is not label_values(selector, label)", v.Name, q.Query)
			continue
		}
		// label_values(selector, label) as `group by (label) (selector)`, which checks both.
		out = append(out, query{where: "dashboard variable " + v.Name, expr: "group by (" + m[2] + ") (" + m[1] + ")"})
	}
	if len(out) < 10 {
		t.Fatalf("only %d queries in %s", len(out), dashboardFile)
	}
	return out
}

type dashPanel struct {
	Title, Type string
	Targets     []struct {
		RefID string
		Expr  string
	}
	Panels []dashPanel
}

// alertQueries collects the expressions of the alert rules.
func alertQueries(t *testing.T) []query {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert, Record, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var out []query
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				t.Fatalf("%s: recording rule %s: this test does not know recorded names yet", alertsFile, r.Record)
			}
			out = append(out, query{where: "alert " + r.Alert, expr: r.Expr})
		}
	}
	if len(out) == 0 {
		t.Fatalf("no rules in %s", alertsFile)
	}
	return out
}

// missing lists the wanted metrics the scrape lacks.
func missing(s *scrape, want map[string]map[string]bool) []string {
	var out []string
	for m := range want {
		if !prometheusSeries[m] && !s.has(m) {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

// certEvent is the development banner's sample certificate event with another event id and learner.
func certEvent(id string, uid int64) string {
	b := strings.Replace(sampleEvent, "3e068212-1c24-11ef-9a57-0242ac120005", id, 1)
	b = strings.Replace(b, `"id": 42`, fmt.Sprintf(`"id": %d`, uid), 1)
	return strings.Replace(b, "alice@example.com", fmt.Sprintf("learner%d@example.com", uid), 1)
}

// avroCert is event_data of a bus entry: the sample event, Avro-encoded as the producer does.
func avroCert(t *testing.T, uid int64, id string) []byte {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(certEvent(id, uid)))
	d.UseNumber()
	var p map[string]any
	if err := d.Decode(&p); err != nil {
		t.Fatal(err)
	}
	b, err := edx.EncodeAvro(edx.TypeCertificateCreated, p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// xadd writes a bus entry the way openedx/event-bus-redis does.
func xadd(t *testing.T, c *redis.Client, stream, eventType, id string, data []byte) {
	t.Helper()
	err := c.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: []any{
		"type", eventType, "id", id, "source", "openedx/lms/web",
		"time", time.Now().UTC().Format("2006-01-02T15:04:05.000000+00:00"),
		"minorversion", "0", "sourcehost", "lms-1", "sourcelib", "11.2.0", "event_data", data,
	}}).Err()
	if err != nil {
		t.Fatalf("XADD %s: %v", stream, err)
	}
}

// promtoolCheckMetrics lints the scrape with promtool (Debian: apt-get install prometheus):
// skipped without it, except under CI.
func promtoolCheckMetrics(t *testing.T, raw []byte) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is not installed (apt-get install prometheus)")
		}
		t.Log("promtool is not installed: /metrics not linted")
		return
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = bytes.NewReader(raw)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics on the bridge's /metrics: %v\n%s", err, out)
	}
}

// scrape is one read of /metrics in the text exposition format.
type scrape struct {
	raw    []byte
	types  map[string]string          // metric family -> counter, gauge, histogram, …
	labels map[string]map[string]bool // sample name -> its label names
}

// has reports whether the scrape holds samples of the series name a query uses. Names are
// compared as series names, not family names: a counter or gauge by its name; a histogram by
// name_bucket, name_sum and name_count, a summary by name, name_sum and name_count (each has
// samples of that name, of a family whose TYPE is histogram or summary); and never a histogram's
// bare family name, which no series has.
func (s *scrape) has(name string) bool {
	if _, ok := s.labels[name]; !ok {
		return false
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && s.types[name] == "" {
			// A suffixed sample belongs to its base family, which must be a histogram or summary.
			if typ := s.types[base]; typ != "histogram" && typ != "summary" {
				return false
			}
		}
	}
	return true
}

// fetchMetrics reads one /metrics answer.
func fetchMetrics(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return raw
}

func scrapeMetrics(t *testing.T, url string) *scrape {
	t.Helper()
	raw := fetchMetrics(t, url)
	s := &scrape{raw: raw, types: map[string]string{}, labels: map[string]map[string]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			s.types[f[2]] = f[3]
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		var ls []string
		if n, _, ok := strings.Cut(name, "{"); ok {
			name = n
			// The labels end at the last '}' of the line (values may hold spaces and braces).
			ls = labelNames(line[len(n)+1 : strings.LastIndexByte(line, '}')])
		}
		if s.labels[name] == nil {
			s.labels[name] = map[string]bool{}
		}
		for _, l := range ls {
			s.labels[name][l] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return s
}

// labelNames reads the names of `a="x",b="y"` (values may hold escaped quotes).
func labelNames(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		for i < len(s) && (s[i] == ',' || s[i] == ' ') {
			i++
		}
		j := strings.IndexByte(s[i:], '=')
		if j < 0 {
			break
		}
		out = append(out, strings.TrimSpace(s[i:i+j]))
		i += j + 1
		if i < len(s) && s[i] == '"' {
			i++
			for i < len(s) && s[i] != '"' {
				if s[i] == '\\' {
					i++
				}
				i++
			}
			i++
		}
	}
	return out
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// promqlRefs is what a PromQL expression refers to.
type promqlRefs struct {
	metrics  map[string][]string // metric name -> label names its selectors match on
	grouping []string            // label names in by, without, on, ignoring, group_left, group_right
}

// PromQL words that are not metric names when they stand without a following "(".
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true, "inf": true, "nan": true,
}

// Keywords followed by a list of label names.
var promqlLabelLists = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

var matcherRE = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*$`)

// scanPromQL finds the metric names, matcher labels and grouping labels of a PromQL expression
// (Grafana variables such as $__rate_interval and "$namespace" allowed). It is a scanner, not a
// parser: enough to name what an expression reads, with an error on what it cannot scan.
func scanPromQL(expr string) (promqlRefs, error) {
	r := promqlRefs{metrics: map[string][]string{}}
	s := expr
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
	isIdent := func(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }
	skipSpace := func(i int) int {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
			i++
		}
		return i
	}
	skipString := func(i int) (int, error) {
		q := s[i]
		for i++; i < len(s); i++ {
			if s[i] == '\\' && q != '`' {
				i++
				continue
			}
			if s[i] == q {
				return i + 1, nil
			}
		}
		return 0, fmt.Errorf("unterminated string at %d", i)
	}
	last := "" // the metric name just read, for a selector that follows it
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(i)
			if err != nil {
				return r, err
			}
			i = j
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '[': // a range or subquery: durations and Grafana variables
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return r, fmt.Errorf("unterminated [ at %d", i)
			}
			i += j + 1
			continue // `metric[5m]` keeps nothing to attach; a selector cannot follow
		case c == '{':
			end, names, err := scanMatchers(s, i, skipString)
			if err != nil {
				return r, err
			}
			if last == "" {
				return r, fmt.Errorf("a selector without a metric name at %d", i)
			}
			r.metrics[last] = append(r.metrics[last], names...)
			i = end
			last = ""
			continue
		case c == '$': // a Grafana variable
			i++
			if i < len(s) && s[i] == '{' {
				j := strings.IndexByte(s[i:], '}')
				if j < 0 {
					return r, fmt.Errorf("unterminated ${ at %d", i)
				}
				i += j + 1
			} else {
				for i < len(s) && isIdent(s[i]) {
					i++
				}
			}
		case (c >= '0' && c <= '9') || (c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9'):
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			word := s[i:j]
			next := skipSpace(j)
			switch {
			case promqlLabelLists[word] && next < len(s) && s[next] == '(':
				end := strings.IndexByte(s[next:], ')')
				if end < 0 {
					return r, fmt.Errorf("unterminated %s ( at %d", word, next)
				}
				for _, l := range strings.Split(s[next+1:next+end], ",") {
					if l = strings.TrimSpace(l); l == "" {
						continue
					} else if !labelNameRE.MatchString(l) {
						return r, fmt.Errorf("%s (...): %q is not a label name", word, l)
					}
					r.grouping = append(r.grouping, l)
				}
				i = next + end + 1
				last = ""
				continue
			case promqlKeywords[word], next < len(s) && s[next] == '(':
				// an operator, an aggregation or a function call
				last = ""
			default:
				if _, ok := r.metrics[word]; !ok {
					r.metrics[word] = nil
				}
				i, last = j, word
				continue
			}
			i = j
			continue
		default:
			i++ // operators, parentheses, commas
		}
		last = ""
	}
	return r, nil
}

// scanMatchers reads the label matchers of a selector starting at s[i] == '{'.
func scanMatchers(s string, i int, skipString func(int) (int, error)) (end int, names []string, err error) {
	start := i + 1
	for i++; i < len(s); {
		switch s[i] {
		case '"', '\'', '`':
			pre := s[start:i]
			m := matcherRE.FindStringSubmatch(pre)
			if m == nil {
				return 0, nil, fmt.Errorf("cannot read the matcher %q", pre)
			}
			names = append(names, m[1])
			if i, err = skipString(i); err != nil {
				return 0, nil, err
			}
			for i < len(s) && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t') {
				i++
			}
			switch {
			case i < len(s) && s[i] == ',':
				i++
				start = i
			case i < len(s) && s[i] == '}':
				return i + 1, names, nil
			default:
				return 0, nil, fmt.Errorf("unexpected text after a matcher at %d", i)
			}
		case '}':
			if strings.TrimSpace(s[start:i]) != "" {
				return 0, nil, fmt.Errorf("cannot read the matcher %q", s[start:i])
			}
			return i + 1, names, nil
		default:
			i++
		}
	}
	return 0, nil, fmt.Errorf("unterminated { in %q", s)
}

// The scanner finds what expressions of the dashboard's and the alerts' kinds refer to.
func TestScanPromQL(t *testing.T) {
	for _, tc := range []struct {
		expr     string
		metrics  map[string][]string
		grouping []string
	}{
		{`sum by (code, status) (rate(bridge_webhook_requests_total{namespace=~"$namespace", code=~"Service Unavailable|x"}[$__rate_interval]))`,
			map[string][]string{"bridge_webhook_requests_total": {"namespace", "code"}}, []string{"code", "status"}},
		{"count by (namespace) (up{a=\"b\"})\nunless on (namespace)\ncount(bridge_sweeper_requeued_total)",
			map[string][]string{"up": {"a"}, "bridge_sweeper_requeued_total": nil}, []string{"namespace", "namespace"}},
		{`(x unless on (job, instance) (x offset 1h)) and on (job) ((time() - process_start_time_seconds < 3600) or (process_start_time_seconds offset 1h))`,
			map[string][]string{"x": nil, "process_start_time_seconds": nil}, []string{"job", "instance", "job"}},
		{`histogram_quantile(0.99, sum by (le) (rate(h_bucket{a='x\'y'}[5m:1m]))) > 1e3`,
			map[string][]string{"h_bucket": {"a"}}, []string{"le"}},
		{`max(bridge_eventbus_lag) > bool 0.5`, map[string][]string{"bridge_eventbus_lag": nil}, nil},
		{"deriv(max by (namespace) (bridge_owed_rows)[30m:1m]) > 0\nand\nmax by (namespace) (quantile_over_time(0.5, bridge_owed_due_rows{a=\"b\"}[10m])) > 10",
			map[string][]string{"bridge_owed_rows": nil, "bridge_owed_due_rows": {"a"}}, []string{"namespace", "namespace"}},
	} {
		r, err := scanPromQL(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if fmt.Sprint(r.metrics) != fmt.Sprint(tc.metrics) || !slices.Equal(r.grouping, tc.grouping) {
			t.Errorf("%s:\n got %v %v\nwant %v %v", tc.expr, r.metrics, r.grouping, tc.metrics, tc.grouping)
		}
	}
	for _, bad := range []string{`x{a="b"`, `{a="b"}`, `x{a}`, `sum by (a (x)`, `x{a="b`} {
		if _, err := scanPromQL(bad); err == nil {
			t.Errorf("%s: scanned without an error", bad)
		}
	}
}
