package durable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Durability is the wait the bridge's answers are held back by: a Gate on one Redis (standalone
// or Sentinel), a Cluster on a Redis Cluster.
type Durability interface {
	// Wait returns once every write made before it is durable as configured; a failed wait
	// wraps ErrNotConfirmed.
	Wait(ctx context.Context) error
	// Detect reads what applies (version, AOF, replicas) now.
	Detect(ctx context.Context) error
	// Describe says which durability applies, for `bridge check --remote` and the start log.
	Describe() string
	// Problems lists what makes the configured durability impossible.
	Problems() []string
}

var (
	_ Durability = (*Gate)(nil)
	_ Durability = (*Cluster)(nil)
)

// Open returns the wait for rdb: a Cluster on a Redis Cluster, a Gate otherwise.
func Open(rdb redis.UniversalClient, o Options) Durability {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return NewCluster(cc, o)
	}
	return New(rdb, o)
}

// Cluster waits on every primary of a Redis Cluster. An event writes to several shards (its
// learner's bucket, the queue's, the e-mail index's and its id claim's), and WAIT and WAITAOF
// cover only their own node's writes. So each primary has a Gate of its own with a marker key in
// a slot that primary serves, and a wait writes every marker after the event's writes and waits
// on all of them at once: each shard's replication stream is ordered, so its marker's
// acknowledgement covers everything the event wrote there. The primaries are listed again every
// minute and soon after a failed wait, since a failover moves the slots to another node.
type Cluster struct {
	cc  *redis.ClusterClient
	opt Options
	log *slog.Logger
	now func() time.Time

	mu       sync.Mutex
	shards   []*shard // in address order
	listedAt time.Time
	listErr  error // the last listing's error, nil once one succeeds
	relist   bool  // a wait failed: list again after redetectAfterFailure
	listing  bool
}

// shard is one primary and its gate.
type shard struct {
	addr, marker string
	gate         *Gate
}

// NewCluster prepares the wait for a Redis Cluster. It sends nothing: call Detect.
func NewCluster(cc *redis.ClusterClient, o Options) *Cluster {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cluster{cc: cc, opt: o, log: log.With("component", "durable"), now: time.Now}
}

// maxMarkerTries bounds the search for a marker key per primary: each try lands in a slot of
// one primary with a probability of its share of the slots.
const maxMarkerTries = 1 << 16

// list finds the Cluster's primaries and a marker key in a slot of each; a primary still there
// keeps its gate (and its detected setting).
func (c *Cluster) list(ctx context.Context) error {
	var mu sync.Mutex
	primaries := 0
	err := c.cc.ForEachMaster(ctx, func(context.Context, *redis.Client) error {
		mu.Lock()
		primaries++
		mu.Unlock()
		return nil
	})
	if err != nil {
		return fmt.Errorf("list the Redis Cluster primaries: %w", err)
	}
	c.mu.Lock()
	old := map[string]*shard{}
	for _, s := range c.shards {
		old[s.addr+" "+s.marker] = s
	}
	c.mu.Unlock()
	found := map[string]*shard{}
	for i := 0; len(found) < primaries && i < maxMarkerTries; i++ {
		key := fmt.Sprintf("%sdurable:{d%d}", c.opt.Prefix, i)
		node, err := c.cc.MasterForKey(ctx, key)
		if err != nil {
			return fmt.Errorf("list the Redis Cluster primaries: %w", err)
		}
		addr := node.Options().Addr
		if found[addr] != nil {
			continue
		}
		if s := old[addr+" "+key]; s != nil {
			found[addr] = s
			continue
		}
		o := c.opt
		o.Log = c.log.With("primary", addr)
		g := New(node, o)
		g.marker = key
		found[addr] = &shard{addr: addr, marker: key, gate: g}
	}
	if len(found) < primaries {
		return fmt.Errorf("list the Redis Cluster primaries: no marker key found for %d of %d", primaries-len(found), primaries)
	}
	shards := make([]*shard, 0, len(found))
	for _, s := range found {
		shards = append(shards, s)
	}
	sort.Slice(shards, func(i, j int) bool { return shards[i].addr < shards[j].addr })
	c.mu.Lock()
	c.shards = shards
	c.mu.Unlock()
	return nil
}

// current lists the primaries again when due and returns them. One caller lists; the others use
// the list they find.
func (c *Cluster) current(ctx context.Context) []*shard {
	c.mu.Lock()
	age := c.now().Sub(c.listedAt)
	due := !c.listing && (c.shards == nil || age >= redetectEvery || (c.relist && age >= redetectAfterFailure))
	if !due {
		s := c.shards
		c.mu.Unlock()
		return s
	}
	c.listing = true
	c.mu.Unlock()
	shards, err := c.relistNow(ctx)
	if err != nil {
		c.log.Warn("could not list the Redis Cluster primaries to wait on; keeping the previous list", "err", err)
	}
	c.mu.Lock()
	c.listing = false
	c.mu.Unlock()
	return shards
}

// relistNow lists the primaries and records when and how that went; on failure the previous
// list stays. It returns the list now in use.
func (c *Cluster) relistNow(ctx context.Context) ([]*shard, error) {
	err := c.list(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.listedAt, c.listErr, c.relist = c.now(), err, err != nil
	return c.shards, err
}

// Wait writes a marker on every primary and waits on each, concurrently; it fails if any does.
func (c *Cluster) Wait(ctx context.Context) error {
	shards := c.current(ctx)
	if len(shards) == 0 {
		if c.opt.MinReplicas == 0 {
			return nil // nothing is known to apply, as a Gate that could not detect
		}
		c.mu.Lock()
		err := c.listErr
		c.mu.Unlock()
		return fmt.Errorf("%w: no Redis Cluster primary to wait on: %v", ErrNotConfirmed, err)
	}
	errs := make([]error, len(shards))
	var wg sync.WaitGroup
	for i, s := range shards {
		wg.Go(func() { errs[i] = s.gate.Wait(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			c.mu.Lock()
			c.relist = true
			c.mu.Unlock()
			return fmt.Errorf("primary %s: %w", shards[i].addr, err)
		}
	}
	return nil
}

// Detect lists the primaries and detects what applies on each.
func (c *Cluster) Detect(ctx context.Context) error {
	shards, err := c.relistNow(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range shards {
		if err := s.gate.Detect(ctx); err != nil {
			errs = append(errs, fmt.Errorf("primary %s: %w", s.addr, err))
		}
	}
	return errors.Join(errs...)
}

// Describe says what applies on the primaries: once when they agree, else for each.
func (c *Cluster) Describe() string {
	c.mu.Lock()
	shards, listErr := c.shards, c.listErr
	c.mu.Unlock()
	if len(shards) == 0 {
		msg := "unknown: the Redis Cluster primaries could not be listed"
		if listErr != nil {
			msg += " (" + listErr.Error() + ")"
		}
		return msg
	}
	descs := make([]string, len(shards))
	same := true
	for i, s := range shards {
		descs[i] = s.gate.Describe()
		same = same && descs[i] == descs[0]
	}
	if same {
		return fmt.Sprintf("on each of the %d Cluster primaries, %s", len(shards), descs[0])
	}
	parts := make([]string, len(shards))
	for i, s := range shards {
		parts[i] = "primary " + s.addr + ": " + descs[i]
	}
	return "the Cluster primaries differ: " + strings.Join(parts, "; ")
}

// Problems lists each primary's problems.
func (c *Cluster) Problems() []string {
	c.mu.Lock()
	shards, listErr := c.shards, c.listErr
	c.mu.Unlock()
	if len(shards) == 0 && c.opt.MinReplicas > 0 {
		return []string{fmt.Sprintf("BRIDGE_REDIS_MIN_REPLICAS is %d, but the Redis Cluster primaries could not be listed: %v", c.opt.MinReplicas, listErr)}
	}
	var out []string
	for _, s := range shards {
		for _, p := range s.gate.Problems() {
			out = append(out, "primary "+s.addr+": "+p)
		}
	}
	return out
}
