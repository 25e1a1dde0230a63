package rules

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"72h", 72 * time.Hour, false},
		{"90m", 90 * time.Minute, false},
		{"1h30m", 90 * time.Minute, false},
		{"0", 0, false},
		{"0s", 0, false},
		{"30d", 30 * day, false},
		{"0d", 0, false},
		{"1d12h", day + 12*time.Hour, false},
		{"365d", 365 * day, false},
		{"-1h", -time.Hour, false},
		{"-2d", -2 * day, false},
		{"+1d", day, false},
		{"", 0, true},
		{"10", 0, true},
		{"d", 0, true},
		{"1.5d", 0, true},
		{"1d-2h", 0, true},
		{"--1h", 0, true},
		{"1w", 0, true},
		{"99999999999d", 0, true},
		{"106751d24h", 0, true},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
