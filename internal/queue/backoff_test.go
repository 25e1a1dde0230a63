package queue

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	for n := 1; n <= 20; n++ {
		base := 10 * time.Second << (n - 1)
		if n > 12 || base > 6*time.Hour {
			base = 6 * time.Hour
		}
		for i := 0; i < 50; i++ {
			d := Backoff(n, 0)
			if d < base*8/10 || d > base*12/10 {
				t.Fatalf("Backoff(%d) = %s, want within ±20%% of %s", n, d, base)
			}
		}
	}
	if d := Backoff(1, time.Hour); d != time.Hour {
		t.Fatalf("Retry-After longer than the backoff must win, got %s", d)
	}
	var sum time.Duration
	for n := 1; n <= 12; n++ {
		sum += Backoff(n, 0)
	}
	if sum < 8*time.Hour || sum > 15*time.Hour {
		t.Fatalf("12 retries span %s, want about half a day", sum)
	}
}
