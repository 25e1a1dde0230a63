package bench

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/backfill"
	"github.com/badgebridge/bridge/internal/rules"
)

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 10000: "10,000", 100000: "100,000",
		1234567: "1,234,567", -1000: "-1,000", -100: "-100"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestBackfillExtrapolate(t *testing.T) {
	r := backfillResult{N: 10000, Awarded: 10000, Summary: backfill.Summary{Accepted: 10000},
		Intake: 4 * time.Second, Total: 12 * time.Second, FirstAward: time.Second, AwardSpan: 10 * time.Second}
	// Intake 2,500/s, awards 1,000/s: the awards bound 100,000 learners at 100 s, after the lag.
	got, ok := r.extrapolate(100000)
	if !ok || got != 101*time.Second {
		t.Fatalf("extrapolate = %s, %v; want 1m41s", got, ok)
	}
	r.Err = errTimeout
	if _, ok := r.extrapolate(100000); ok {
		t.Fatal("an unfinished run must not be extrapolated")
	}
}

// The benchmark's file must be what `bridge backfill` reads: every row valid and mapped by the
// benchmark's mapping (a dry run counts unmapped rows as ignored).
func TestBackfillCSVReadsAndMaps(t *testing.T) {
	dir := t.TempDir()
	mapping, err := writeMapping(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := rules.Load(mapping)
	if err != nil {
		t.Fatal(err)
	}
	file := dir + "/backfill.csv"
	const n = 250
	if err := writeBackfillCSV(file, 1_000_000, n); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sum, err := backfill.Run(context.Background(), f, file, backfill.Options{Mapping: m})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Lines != n || sum.Events != n || sum.Invalid != 0 || sum.Ignored != 0 {
		t.Fatalf("summary %+v, want %d valid mapped events", sum, n)
	}
}
