package eventbus

import (
	"context"
	"os"
	"strings"
)

// maxConsumerName bounds the consumer name; a longer host name keeps its start and gains a
// hash of the whole, so two long pod names that differ only at the end stay apart.
const maxConsumerName = 64

// defaultConsumerName is the name of this process in the group: the pod name (POD_NAME, set
// from the downward API by the chart), else HOSTNAME (the pod name in Kubernetes), else the
// host name. It is stable across restarts of the same pod, so a restarted process finishes
// the entries it left pending and restarts do not add names to the group.
//
// Two processes on one host (bridge run twice on a laptop) share the name. That is harmless:
// XREADGROUP ">" still hands each new entry to one of them, and the one that re-reads the
// shared pending list may hand an entry the other is handling to the intake a second time,
// which the intake de-duplicates by event id. Set Config.Consumer to keep them apart.
func defaultConsumerName() string {
	return consumerName(os.Getenv, os.Hostname)
}

func consumerName(getenv func(string) string, hostname func() (string, error)) string {
	name := strings.TrimSpace(getenv("POD_NAME"))
	if name == "" {
		name = strings.TrimSpace(getenv("HOSTNAME"))
	}
	if name == "" {
		if h, err := hostname(); err == nil {
			name = h
		}
	}
	if name = sanitizeName(name); name == "" {
		return "bridge"
	}
	return name
}

// sanitizeName keeps letters, digits, ".", "_" and "-" (anything else becomes "-"), so the
// name shows plainly in XINFO and in logs, and caps the length.
func sanitizeName(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '.' || ch == '_' || ch == '-') {
			b[i] = '-'
		}
	}
	out := strings.Trim(string(b), "-")
	if len(out) > maxConsumerName {
		h := sha256Hex(s)[:8]
		out = out[:maxConsumerName-len(h)-1] + "-" + h
	}
	return out
}

// pruneLua removes, atomically, the consumers of a group that have nothing pending and have
// not tried to read for longer than ARGV[2] ms, except this one (ARGV[3]). Checking and
// removing in one script matters: XGROUP DELCONSUMER drops a consumer's pending entries from
// the group for good, so a consumer that read something between a separate check and the
// removal would lose it. A live consumer reads every Config.Block, so it is never idle that
// long; one that was removed by mistake is recreated by its next read.
const pruneLua = `
local removed = {}
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, c in ipairs(consumers) do
  local name, pending, idle
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1]
    elseif c[i] == 'pending' then pending = c[i + 1]
    elseif c[i] == 'idle' then idle = c[i + 1] end
  end
  if name and name ~= ARGV[3] and pending == 0 and idle and idle > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    removed[#removed + 1] = name
  end
end
return removed
`

// pruneConsumers removes the group's gone consumers from stream (see pruneLua). Their pending
// entries were claimed by the live ones first (claim), which is what leaves them with none.
func (c *Consumer) pruneConsumers(ctx context.Context, st *runState, stream string) error {
	if st.noPrune[stream] {
		return nil
	}
	removed, err := c.pruneScript.Run(ctx, c.bus, []string{stream},
		c.cfg.Group, c.cfg.GoneAfter.Milliseconds(), c.cfg.Consumer).StringSlice()
	switch {
	case err == nil:
	case isServerError(err) && (strings.Contains(err.Error(), "NOGROUP") || strings.Contains(strings.ToLower(err.Error()), "no such key")):
		return nil // the read finds the group missing and recreates it
	case isServerError(err):
		// E.g. an ACL that denies scripts on the bus Redis: the names stay, nothing else suffers.
		st.noPrune[stream] = true
		c.log.Warn("cannot remove gone consumers from the consumer group; their names stay listed", "stream", stream, "err", err)
		return nil
	default:
		return err
	}
	if len(removed) > 0 {
		c.log.Info("removed consumers that were gone with nothing pending from the group", "stream", stream,
			"count", len(removed), "consumers", removed[:min(len(removed), maxLoggedIDs)], "idle_over", c.cfg.GoneAfter.String())
	}
	return nil
}
