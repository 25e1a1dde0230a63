package rules

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// parseDuration reads a mapping duration: Go duration syntax ("72h", "90m", "1h30m"), optionally
// led by a whole number of days ("30d", "365d", "1d12h"), because revocation delays and badge
// validity are naturally counted in days and Go has no day unit. A day is 24 hours.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	sign := time.Duration(1)
	rest := s
	if rest[0] == '-' || rest[0] == '+' {
		if rest[0] == '-' {
			sign = -1
		}
		rest = rest[1:]
	}
	bad := fmt.Errorf("invalid duration %q (want e.g. 72h, 90m or 30d)", s)
	var days time.Duration
	hadDays := false
	if i := strings.IndexByte(rest, 'd'); i > 0 && isDigits(rest[:i]) {
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil || n > int64(math.MaxInt64/int64(24*time.Hour)) {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		days, hadDays = time.Duration(n)*24*time.Hour, true
		rest = rest[i+1:]
	}
	var d time.Duration
	if rest != "" || !hadDays {
		// A sign is only allowed in front: "--1h" and "1d-2h" are mistakes, not arithmetic.
		if rest == "" || rest[0] == '-' || rest[0] == '+' {
			return 0, bad
		}
		var err error
		if d, err = time.ParseDuration(rest); err != nil {
			return 0, bad
		}
	}
	if d > math.MaxInt64-days {
		return 0, fmt.Errorf("duration %q is too long", s)
	}
	return sign * (days + d), nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
