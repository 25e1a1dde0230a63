package backoff

import (
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	p := Policy{Base: 10 * time.Second, Max: 6 * time.Hour, Low: 0.8, High: 1.2}
	for n := 1; n <= 20; n++ {
		base := 10 * time.Second << (n - 1)
		if n > 12 || base > 6*time.Hour {
			base = 6 * time.Hour
		}
		for i := 0; i < 50; i++ {
			if d := p.Delay(n); d < base*8/10 || d > base*12/10 {
				t.Fatalf("Delay(%d) = %s, want within ±20%% of %s", n, d, base)
			}
		}
	}
	upper := Policy{Base: 200 * time.Millisecond, Max: 30 * time.Second, Low: 0.5, High: 1}
	for n := 1; n <= 12; n++ {
		want := min(200*time.Millisecond<<(n-1), 30*time.Second)
		for i := 0; i < 50; i++ {
			if d := upper.Delay(n); d < want/2 || d > want {
				t.Fatalf("Delay(%d) = %v, want in [%v, %v]", n, d, want/2, want)
			}
		}
	}
	for i := 0; i < 100; i++ {
		if j := Jitter(time.Second); j < 0 || j > time.Second {
			t.Fatalf("Jitter(1s) = %v", j)
		}
	}
}
