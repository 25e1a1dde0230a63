// Command bridge-bench measures the bridge against its baselines in one run and prints a
// markdown table of ratios (docs/BENCHMARKS.md). It starts its own redis-server, the bridge and
// a fake badge host, all on 127.0.0.1; the bridges whose peak RSS is reported run as processes
// of their own, this binary started again with the hidden first argument -child-bridge
// <run|serve|work>, which runs that bridge from its environment as `bridge <command>` would.
//
//	go run ./cmd/bridge-bench            # the documented run
//	go run ./cmd/bridge-bench -quick     # a smoke run of a few seconds
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/badgebridge/bridge/internal/bench"
)

func main() {
	// Before the benchmark's flags, so that -h does not list a mode only the benchmark uses.
	if bench.IsChildBridge(os.Args[1:]) {
		os.Exit(bench.RunChildBridge(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(run())
}

func run() int {
	var cfg bench.Config
	fs := flag.NewFlagSet("bridge-bench", flag.ContinueOnError)
	phases := fs.String("phases", strings.Join(bench.AllPhases, ","), "phases to run, comma-separated")
	conc := fs.String("conc", "1,16,64", "webhook concurrency levels")
	fs.IntVar(&cfg.IngestN, "ingest-n", 10000, "webhook requests per concurrency level (bridge and baseline each)")
	fs.DurationVar(&cfg.IngestTime, "ingest-time", 20*time.Second, "longest one concurrency level may run")
	fs.IntVar(&cfg.BusN, "bus-n", 4000, "event-bus entries")
	fs.DurationVar(&cfg.BusTime, "bus-time", 60*time.Second, "longest the event-bus intake may take")
	fs.DurationVar(&cfg.Latency, "latency", 50*time.Millisecond, "L: the fake host's latency on every request")
	fs.IntVar(&cfg.Concurrency, "c", 10, "C: BRIDGE_WORKER_CONCURRENCY")
	fs.IntVar(&cfg.Rate, "rate", 10, "R: BRIDGE_BADGR_RATE_LIMIT (and the host's limit) of the rate-bound runs")
	fs.IntVar(&cfg.IssueN, "n", 2000, "awards of the latency-bound issuance run")
	big := fs.Bool("big", false, "the issue's sizes: 10,000 awards instead of -n, 100,000 learners instead of -backfill-n")
	fs.IntVar(&cfg.IssueRate, "issue-rate", 1000, "rate limit of the latency-bound issuance run (host and bridge)")
	fs.IntVar(&cfg.RateN, "rate-n", 100, "awards of the rate-bound issuance run at -rate")
	fs.DurationVar(&cfg.IssueTime, "issue-time", 5*time.Minute, "longest an issuance run may take")
	fs.IntVar(&cfg.BackfillN, "backfill-n", 10000, "learners in the backfill file (bulk mode, at -rate and -latency)")
	fs.DurationVar(&cfg.BackfillTime, "backfill-time", 20*time.Minute, "longest the backfill phase may take (intake and awards)")
	fs.IntVar(&cfg.E2EN, "e2e-n", 30, "end-to-end samples")
	fs.DurationVar(&cfg.E2EGap, "e2e-gap", 500*time.Millisecond, "idle time between end-to-end samples")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of each phase to <prefix>-<phase>.pprof")
	quick := fs.Bool("quick", false, "a small smoke run (overrides the sizes)")
	verbose := fs.Bool("v", false, "log the bridges' warnings too")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	cfg.Phases = strings.Split(*phases, ",")
	for _, s := range strings.Split(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			fmt.Fprintf(os.Stderr, "bridge-bench: -conc %q: %v\n", *conc, err)
			return 2
		}
		cfg.IngestConc = append(cfg.IngestConc, n)
	}
	if *big {
		cfg.IssueN, cfg.BackfillN = 10_000, 100_000
	}
	if *quick {
		cfg.Quick()
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	bridgeLevel := slog.LevelError
	if *verbose {
		bridgeLevel = slog.LevelWarn
	}
	bridgeLog := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: bridgeLevel})).With("in", "bridge")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, cfg, log, bridgeLog)
	if err != nil {
		log.Error("benchmark failed", "err", err)
		if res == nil {
			return 1
		}
	}
	bench.Report(os.Stdout, res)
	for _, e := range res.PhaseError {
		if e != nil {
			return 1
		}
	}
	if err != nil {
		return 1
	}
	return 0
}
