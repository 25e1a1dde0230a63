package bench

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Targets of issue 10, in the benchmark only.
const (
	targetIngestRatio  = 0.3
	targetIngestP99    = 20 * time.Millisecond
	targetBusRatio     = 0.8
	targetAwardRatio   = 0.85
	targetLivePerAward = 2.0
	targetBulkPerAward = 0.05
	targetBackfill     = 10 * time.Minute
	targetRSS          = 64 << 20
	backfillLearners   = 100_000
)

// row is one line of the table.
type row struct {
	figure, measured, baseline, ratio, target, met string
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// Report writes the run as markdown: the machine, the table of figures against their baselines
// and targets, then the details the table leans on (requests by kind, CPU, Redis key families).
func Report(w io.Writer, r *Results) {
	fmt.Fprintf(w, "Machine: %d CPUs (%s), %s, %s/%s. Run took %s.\n\n", runtime.NumCPU(), cpuModel(),
		runtime.Version(), runtime.GOOS, runtime.GOARCH, r.Wall.Round(time.Second))
	rows := figures(r)
	fmt.Fprintln(w, "| figure | measured | baseline | ratio | target | met |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, x := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", x.figure, x.measured, x.baseline, x.ratio, x.target, x.met)
	}
	details(w, r)
	for _, phase := range r.Config.Phases {
		if err := r.PhaseError[phase]; err != nil {
			fmt.Fprintf(w, "\nPhase %s failed: %v\n", phase, err)
		}
	}
}

func figures(r *Results) []row {
	var rows []row
	if in := r.Ingest; in != nil {
		for _, l := range in.Levels {
			x := row{
				figure: fmt.Sprintf("webhook ingest, c = %d (req/s, p50/p99)", l.Conc),
				measured: fmt.Sprintf("%.0f/s, %s / %s", l.Bridge.rate(), ms(percentile(l.Bridge.Latencies, 50)),
					ms(percentile(l.Bridge.Latencies, 99))),
				baseline: fmt.Sprintf("raw Enqueue %.0f/s, %s / %s", l.Raw.rate(), ms(percentile(l.Raw.Latencies, 50)),
					ms(percentile(l.Raw.Latencies, 99))),
				target: "—", met: "—",
			}
			ratio := 0.0
			if l.Raw.rate() > 0 {
				ratio = l.Bridge.rate() / l.Raw.rate()
			}
			x.ratio = fmt.Sprintf("%.2f", ratio)
			if l.Bridge.Failed > 0 {
				x.measured += fmt.Sprintf(" (%d failed)", l.Bridge.Failed)
			}
			if l.Conc == 64 {
				x.target = fmt.Sprintf("≥ %.1f, p99 < %s", targetIngestRatio, ms(targetIngestP99))
				x.met = yesNo(ratio >= targetIngestRatio && percentile(l.Bridge.Latencies, 99) < targetIngestP99)
			}
			rows = append(rows, x)
		}
		rows = append(rows, row{figure: "Redis memory per accepted webhook event (new learner, row, event record, queued job)",
			measured: fmt.Sprintf("%.0f B", in.BytesPerEvent), baseline: "—", ratio: "—", target: "—", met: "—"})
	}
	if b := r.Bus; b != nil {
		x := row{
			figure:   fmt.Sprintf("event-bus intake, %d entries (time to acknowledge all)", b.N),
			measured: busFigure(b.Bridge, b.BridgeN), baseline: "XREADGROUP + Enqueue + XACK: " + busFigure(b.Raw, b.RawN),
			target: fmt.Sprintf("≥ %.1f", targetBusRatio),
		}
		ratio := 0.0
		if b.BridgeN == b.N && b.RawN == b.N && b.Bridge > 0 {
			ratio = b.Raw.Seconds() / b.Bridge.Seconds()
		}
		x.ratio, x.met = fmt.Sprintf("%.2f", ratio), yesNo(ratio >= targetBusRatio)
		rows = append(rows, x)
	}
	cfg := r.Config
	for _, is := range []*issueResult{r.Issue, r.IssueRate} {
		if is == nil {
			continue
		}
		rpa := is.requestsPerAward()
		bound := expected(cfg.Concurrency, cfg.Latency, is.Rate, rpa)
		rate := is.awardsPerSecond()
		x := row{
			figure: fmt.Sprintf("issuance, %d awards, L = %s, C = %d, R = %s", is.N, cfg.Latency, cfg.Concurrency, rateName(is.Rate)),
			measured: fmt.Sprintf("%.1f awards/s (%d in %s), %d × 429 after 1 s", rate, is.Awarded,
				is.Elapsed.Round(10*time.Millisecond), is.Late429),
			baseline: fmt.Sprintf("min(C/L, R/req per award) = %.1f/s; serial bound min(C/(L·req per award), R/req per award) = %.1f/s",
				bound, serialBound(cfg.Concurrency, cfg.Latency, is.Rate, rpa)),
			target: fmt.Sprintf("≥ %.2f, no 429 after 1 s", targetAwardRatio),
		}
		ratio := 0.0
		if bound > 0 && !math.IsInf(bound, 1) {
			ratio = rate / bound
		}
		x.ratio, x.met = fmt.Sprintf("%.2f", ratio), yesNo(ratio >= targetAwardRatio && is.Late429 == 0 && is.Err == nil)
		if sb := serialBound(cfg.Concurrency, cfg.Latency, is.Rate, rpa); sb > 0 && !math.IsInf(sb, 1) {
			x.ratio += fmt.Sprintf(" (%.2f of the serial bound)", rate/sb)
		}
		rows = append(rows, x)
		// The queue is filled by a burst of webhooks, so most of these awards go in batches:
		// the ≤ 2 target of single live awards is measured by the e2e phase.
		rows = append(rows, row{figure: fmt.Sprintf("host requests per award, a burst of %d webhooks (R = %s)", is.N, rateName(is.Rate)),
			measured: fmt.Sprintf("%.2f", rpa), baseline: "—", ratio: "—", target: "—", met: "—"})
	}
	if bf := r.Backfill; bf != nil {
		rows = append(rows, backfillRows(bf)...)
	}
	if is := r.Issue; is != nil && is.BytesPerAward > 0 {
		rows = append(rows, row{figure: "Redis memory per awarded learner (queue drained)", measured: fmt.Sprintf("%.0f B", is.BytesPerAward),
			baseline: "—", ratio: "—", target: "—", met: "—"})
	}
	if e := r.E2E; e != nil {
		x := row{figure: fmt.Sprintf("end to end at idle, signal to 201, host latency 0, R = %s (p50/p99)", rateName(cfg.Rate)),
			measured: fmt.Sprintf("%s / %s (%d samples)", ms(percentile(e.Latencies, 50)), ms(percentile(e.Latencies, 99)), len(e.Latencies)),
			baseline: "—", ratio: "—", target: "—", met: "—"}
		if e.Missed > 0 {
			x.measured += fmt.Sprintf(", %d missed", e.Missed)
		}
		rows = append(rows, x)
		if n := len(e.Latencies); n > 0 {
			rpa := float64(e.Requests) / float64(n)
			rows = append(rows, row{figure: "host requests per live award (one event at a time, single awards)",
				measured: fmt.Sprintf("%.2f (%d requests for %d awards)", rpa, e.Requests, n), baseline: "—", ratio: "—",
				target: fmt.Sprintf("≤ %.0f", targetLivePerAward), met: yesNo(rpa <= targetLivePerAward)})
		}
	}
	if bf := r.Backfill; bf != nil {
		rows = append(rows, rssRow(fmt.Sprintf("peak RSS, bridge `work` process (bulk backfill of %s learners)", thousands(bf.N)),
			bf.BridgeRSS, ""))
	}
	if in := r.Ingest; in != nil && len(in.Levels) > 0 {
		top := in.Levels[0]
		for _, l := range in.Levels {
			if l.Conc >= top.Conc {
				top = l
			}
		}
		var others []string
		for _, l := range in.Levels {
			if l.Conc != top.Conc && l.BridgeRSS > 0 {
				others = append(others, fmt.Sprintf("c = %d: %s", l.Conc, mib(l.BridgeRSS)))
			}
		}
		note := ""
		if len(others) > 0 {
			note = " (a process per level; " + strings.Join(others, ", ") + ")"
		}
		rows = append(rows, rssRow(fmt.Sprintf("peak RSS, bridge `serve` process (webhook ingest, c = %d)", top.Conc), top.BridgeRSS, note))
	}
	rows = append(rows,
		row{figure: "peak RSS, benchmark process (bridge in process for the other phases and the `bridge backfill` command + " +
			"fake host holding every assertion + load generator; an upper bound, not a target)", measured: mib(r.PeakRSS),
			baseline: "—", ratio: "—", target: "—", met: "—"},
		row{figure: "peak RSS, redis-server", measured: mib(r.RedisRSS), baseline: "—", ratio: "—", target: "—", met: "—"})
	return rows
}

// rssRow is the peak RSS of a bridge process against the issue's per-process target.
func rssRow(figure string, rss int64, note string) row {
	x := row{figure: figure, measured: mib(rss) + note, baseline: "—", ratio: "—", target: "< 64 MiB per process",
		met: yesNo(rss < targetRSS)}
	if rss <= 0 {
		x.measured, x.met = "not measured", "—"
	}
	return x
}

// backfillRows are the bulk figures: host requests per award with their kinds, the measured
// backfill time and, below the issue's 100,000 learners, its extrapolation to them.
func backfillRows(bf *backfillResult) []row {
	rpa := bf.requestsPerAward()
	c := bf.Counts
	perAward := row{
		figure: fmt.Sprintf("host requests per award in bulk (backfill of %s learners, R = %s, L = %s)",
			thousands(bf.N), rateName(bf.Rate), bf.Latency),
		measured: fmt.Sprintf("%.3f: %d requests for %s awards (class listing %d, look-ups %d, batch awards %d, "+
			"single awards %d, other %d; 429s among them %d, %d after 1 s)", rpa, bf.Requests, thousands(bf.Awarded),
			c[kindListing], c[kindLookup], c[kindBatch], c[kindAward], c[kindRevoke]+c[kindOther], bf.Throttled, bf.Late429),
		baseline: "—", ratio: "—", target: fmt.Sprintf("≤ %.2f", targetBulkPerAward),
		met: yesNo(rpa > 0 && rpa <= targetBulkPerAward && bf.Err == nil),
	}
	measured := fmt.Sprintf("%s in all (intake %s, %.0f rows/s; first award after %s; awards %.0f/s)",
		bf.Total.Round(100*time.Millisecond), bf.Intake.Round(10*time.Millisecond), bf.intakeRate(),
		bf.FirstAward.Round(10*time.Millisecond), bf.awardRate())
	if bf.Err != nil {
		measured += fmt.Sprintf("; not finished: %s of %s awarded", thousands(bf.Awarded), thousands(bf.N))
	}
	total := row{
		figure:   fmt.Sprintf("%s-learner backfill at R = %s, L = %s (bulk, measured)", thousands(bf.N), rateName(bf.Rate), bf.Latency),
		measured: measured, baseline: "—", ratio: "—", target: "—", met: "—",
	}
	if bf.N >= backfillLearners {
		total.target = "< " + targetBackfill.String()
		total.met = yesNo(bf.Err == nil && bf.Total < targetBackfill)
		return []row{perAward, total}
	}
	extra := row{
		figure: fmt.Sprintf("%s-learner backfill at R = %s (bulk, **extrapolated** from %s learners: "+
			"lag to first award + max(%s / intake rate, %s / award rate))", thousands(backfillLearners), rateName(bf.Rate),
			thousands(bf.N), thousands(backfillLearners), thousands(backfillLearners)),
		measured: "not measured", baseline: "—", ratio: "—", target: "< " + targetBackfill.String(), met: "—",
	}
	if t, ok := bf.extrapolate(backfillLearners); ok {
		extra.measured, extra.met = t.Round(time.Second).String()+" (extrapolated)", yesNo(t < targetBackfill)
	}
	return []row{perAward, total, extra}
}

// thousands writes a count with comma thousands separators, as the issue writes its sizes.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func busFigure(d time.Duration, n int) string {
	if d <= 0 {
		return fmt.Sprintf("%d acknowledged", n)
	}
	return fmt.Sprintf("%s (%.0f/s)", d.Round(time.Millisecond), float64(n)/d.Seconds())
}

func rateName(r int) string {
	if r == 0 {
		return "unlimited"
	}
	return fmt.Sprintf("%d/s", r)
}

// details lists what explains the figures: host requests by kind, CPU per phase, Redis keys.
func details(w io.Writer, r *Results) {
	for _, is := range []*issueResult{r.Issue, r.IssueRate} {
		if is == nil || len(is.Counts) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nHost requests, %s (%d awards): %s.", is.Name, is.Awarded, kindList(is.Counts))
		if is.Err != nil {
			fmt.Fprintf(w, " Not finished: %v.", is.Err)
		}
		fmt.Fprintln(w)
	}
	if bf := r.Backfill; bf != nil && len(bf.Counts) > 0 {
		fmt.Fprintf(w, "\nHost requests, backfill (%d learners, %d awards): %s.", bf.N, bf.Awarded, kindList(bf.Counts))
		if bf.Err != nil {
			fmt.Fprintf(w, " Not finished: %v.", bf.Err)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "\n| phase | wall | CPU, this process | CPU, bridge process | CPU, redis-server |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	cpuRow := func(name string, c cpuUse) {
		bridge := "in this process"
		if c.Apart {
			bridge = c.Bridge.Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", name, c.Wall.Round(time.Millisecond), c.Self.Round(time.Millisecond), bridge,
			c.Redis.Round(time.Millisecond))
	}
	if r.Ingest != nil {
		for _, l := range r.Ingest.Levels {
			cpuRow(fmt.Sprintf("webhook ingest, c = %d, %d requests", l.Conc, l.Bridge.OK), l.CPU)
		}
	}
	if r.Bus != nil {
		cpuRow(fmt.Sprintf("event-bus intake, %d entries", r.Bus.BridgeN), r.Bus.BridgeCPU)
	}
	for _, is := range []*issueResult{r.Issue, r.IssueRate} {
		if is != nil {
			cpuRow(fmt.Sprintf("issuance %s, %d awards", is.Name, is.Awarded), is.CPU)
		}
	}
	if bf := r.Backfill; bf != nil {
		cpuRow(fmt.Sprintf("backfill, %d learners (intake and awards)", bf.N), bf.CPU)
	}
	if r.Ingest != nil && len(r.Ingest.Levels) > 0 {
		l := r.Ingest.Levels[len(r.Ingest.Levels)-1]
		commandsPer(w, fmt.Sprintf("webhook event (c = %d)", l.Conc), l.CPU.Commands, l.Bridge.OK)
	}
	if r.Bus != nil {
		commandsPer(w, "event-bus entry (workers running at R)", r.Bus.BridgeCPU.Commands, r.Bus.BridgeN)
	}
	if r.Issue != nil {
		commandsPer(w, "award ("+r.Issue.Name+")", r.Issue.CPU.Commands, r.Issue.Awarded)
	}
	if bf := r.Backfill; bf != nil {
		commandsPer(w, "backfilled award (intake and bulk run)", bf.CPU.Commands, bf.Awarded)
	}
	if is := r.Issue; is != nil && len(is.Families) > 0 && is.Awarded > 0 {
		fmt.Fprintf(w, "\nRedis keys after issuance %s (%d awarded learners, queue drained):\n\n", is.Name, is.Awarded)
		fmt.Fprintln(w, "| key family | keys | bytes | bytes per learner |")
		fmt.Fprintln(w, "|---|---|---|---|")
		for _, f := range is.Families {
			fmt.Fprintf(w, "| `%s` | %d | %d | %.0f |\n", f.Name, f.Keys, f.Bytes, float64(f.Bytes)/float64(is.Awarded))
		}
	}
}

// kindList is host request counts by kind, in name order.
func kindList(counts map[string]int) string {
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	parts := make([]string, 0, len(kinds))
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, counts[k]))
	}
	return strings.Join(parts, ", ")
}

// commandsPer lists the Redis commands a phase ran per unit of work, most frequent first
// (commands run inside scripts included: Redis counts them too).
func commandsPer(w io.Writer, unit string, cmds map[string]int64, n int) {
	if n == 0 || len(cmds) == 0 {
		return
	}
	names := make([]string, 0, len(cmds))
	var total int64
	for k, v := range cmds {
		if v > 0 {
			names = append(names, k)
			total += v
		}
	}
	sort.Slice(names, func(i, j int) bool { return cmds[names[i]] > cmds[names[j]] })
	parts := make([]string, 0, len(names))
	for _, k := range names {
		if per := float64(cmds[k]) / float64(n); per >= 0.05 {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, per))
		}
	}
	fmt.Fprintf(w, "\nRedis commands per %s: %.1f in all; %s.\n", unit, float64(total)/float64(n), strings.Join(parts, ", "))
}

// cpuModel is /proc/cpuinfo's model name, as lscpu reports it.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
