package durable

import (
	"fmt"
	"strconv"
	"strings"
)

// Describe says which durability applies to an answered event, for `bridge check --remote` and
// the start log: fsync, replicas, both, or neither, and why.
func (g *Gate) Describe() string {
	if g == nil {
		return "neither: answers do not wait (no queue Redis durability wait is set up)"
	}
	if g.client == nil {
		return "neither: waiting for replicas or fsync is not supported with this Redis client; " +
			"an answer means the primary accepted the write"
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.set.known {
		msg := "unknown: the queue Redis version and AOF setting could not be read"
		if g.detectErr != nil {
			msg += " (" + g.detectErr.Error() + ")"
		}
		if g.opt.MinReplicas > 0 {
			msg += fmt.Sprintf("; answers wait for %s (WAIT)", replicas(g.opt.MinReplicas))
		}
		return msg
	}
	return g.describe(g.set)
}

func (g *Gate) describe(s setting) string {
	const fsync = "fsync (WAITAOF, Redis ≥ 7.2 with AOF)"
	n := g.opt.MinReplicas
	switch {
	case s.fsync && n > 0:
		return fmt.Sprintf("%s and replicas: waits for %s (WAIT) before answering or acknowledging: "+
			"an answered event survives a crash of the primary and a failover", fsync, replicas(n))
	case s.fsync:
		return fsync + ": an answered event survives a crash of the primary; a failover can still lose " +
			"what no replica had received (set BRIDGE_REDIS_MIN_REPLICAS)"
	case n > 0:
		return fmt.Sprintf("replicas: waits for %s (WAIT) before answering or acknowledging, so a failover "+
			"keeps answered events; no fsync wait (%s)", replicas(n), whyNoFsync(s))
	}
	return fmt.Sprintf("neither: an answer means the primary accepted the write (%s); a Redis crash can lose "+
		"the last second with AOF everysec (nothing with appendfsync always), or everything since the last "+
		"snapshot without AOF, and a failover what no replica had received", whyNoFsync(s))
}

// Problems lists what makes the configured durability impossible, for `bridge check --remote`.
// It reads what the last Detect found.
func (g *Gate) Problems() []string {
	if g == nil || g.opt.MinReplicas == 0 {
		return nil
	}
	if g.client == nil {
		return []string{fmt.Sprintf("BRIDGE_REDIS_MIN_REPLICAS is %d, but waiting for replicas is not supported with this Redis client: answers would not wait", g.opt.MinReplicas)}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if short(g.set, g.opt.MinReplicas) {
		return []string{fmt.Sprintf("BRIDGE_REDIS_MIN_REPLICAS is %d, but the primary has %s connected: every event would be answered 503 (event-bus entries stay pending) until enough replicas are",
			g.opt.MinReplicas, replicas(g.set.replicas))}
	}
	return nil
}

func whyNoFsync(s setting) string {
	switch {
	case !s.aof:
		return "Redis " + s.version + ", AOF off"
	case !VersionAtLeast(s.version, 7, 2):
		return "Redis " + s.version + " with AOF: WAITAOF needs 7.2"
	}
	return "Redis " + s.version
}

func replicas(n int) string {
	if n == 1 {
		return "1 replica"
	}
	return strconv.Itoa(n) + " replicas"
}

// ParseInfo reads the "field:value" lines of an INFO answer.
func ParseInfo(info string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out
}

// VersionAtLeast compares a Redis version string such as 7.2.4 with major.minor.
func VersionAtLeast(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}
