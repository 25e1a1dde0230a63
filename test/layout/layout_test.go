// Package layout checks that data only flows down the package layout the README's "Layout"
// table describes: a package never imports one above it, and each concern reaches the next only
// through its own room.
package layout

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/badgebridge/bridge/internal/"

// forbidden lists, per package, what it must not import (directly or not). "intake" and below
// are the core; the sources (webhook, eventbus, backfill) stand above intake.
var forbidden = map[string][]string{
	"edx":        {module},
	"rules":      {module + "ledger", module + "intake", module + "queue", module + "reconcile", "github.com/redis/go-redis", "github.com/hibiken/asynq"},
	"ledger":     {module + "intake", module + "queue", module + "reconcile", module + "badgr", module + "badgehost"},
	"intake":     {module + "queue", module + "reconcile", module + "badgr", module + "webhook", module + "eventbus"},
	"queue":      {module + "intake", module + "reconcile", module + "badgr"},
	"reconcile":  {module + "intake", module + "queue", module + "badgr", module + "sandbox"},
	"badgehost":  {module},
	"badgr":      {module + "intake", module + "ledger", module + "queue", module + "reconcile", module + "rules", module + "sandbox"},
	"sandbox":    {module + "badgr\x00", module + "intake", module + "ledger", module + "queue", module + "reconcile"},
	"webhook":    {module + "queue", module + "reconcile", module + "badgr"},
	"eventbus":   {module + "queue", module + "reconcile", module + "badgr"},
	"backfill":   {module + "queue", module + "reconcile", module + "badgr"},
	"reevaluate": {module + "queue", module + "reconcile", module + "badgr"},
	// durable is a leaf: the intake waits through an interface, and the sources only recognise
	// its error (durable.ErrNotConfirmed).
	"durable": {module},
	// unmapped is a leaf too: intake tells it course keys, admin reads its list.
	"unmapped": {module},
	// announce reaches rules only through ledger (which stores its facts), as queue does.
	"announce": {module + "intake", module + "queue", module + "reconcile", module + "badgr", module + "sandbox", module + "webhook", module + "eventbus", module + "backfill", module + "admin"},
}

func TestDataFlowsDown(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Deps " "}}`, "../../internal/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		rules, ok := forbidden[pkg]
		if !ok {
			continue
		}
		seen++
		for _, dep := range fields[1:] {
			for _, bad := range rules {
				// A trailing NUL means "this package exactly", not its subpackages.
				exact := strings.HasSuffix(bad, "\x00")
				if bad = strings.TrimSuffix(bad, "\x00"); (exact && dep == bad) || (!exact && strings.HasPrefix(dep, bad)) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
	if seen != len(forbidden) {
		t.Fatalf("checked %d of the %d packages the layout names: one was renamed or removed", seen, len(forbidden))
	}
}
