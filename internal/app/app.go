// Package app wires the bridge together: configuration in, listeners, workers and their
// dependencies out. cmd/bridge only parses the command line and calls New(...).Run.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/announce"
	"github.com/badgebridge/bridge/internal/badgr"
	"github.com/badgebridge/bridge/internal/config"
	"github.com/badgebridge/bridge/internal/durable"
	"github.com/badgebridge/bridge/internal/eventbus"
	"github.com/badgebridge/bridge/internal/intake"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/queue"
	"github.com/badgebridge/bridge/internal/reconcile"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/unmapped"
	"github.com/badgebridge/bridge/internal/webhook"
)

// Commands that run as a service.
const (
	CmdRun   = "run"
	CmdServe = "serve"
	CmdWork  = "work"
)

// App is one bridge process.
type App struct {
	cfg     config.Config
	command string
	log     *slog.Logger
	banner  io.Writer // where development mode prints its instructions

	// Version is the release version main was built with ("dev" when none): the announcements'
	// sourcelib. A binary built from a tagged module has it in its build info too, but a
	// release image is built without the repository's history.
	Version string

	// Ready is closed once both listeners accept connections (tests wait on it).
	Ready chan struct{}
	// Addrs are the bound listener addresses, set before Ready closes.
	HTTPAddr, AdminAddr string
}

// New prepares an App for command (run, serve or work).
func New(cfg config.Config, command string, log *slog.Logger, banner io.Writer) *App {
	return &App{cfg: cfg, command: command, log: log, banner: banner, Ready: make(chan struct{})}
}

// parts is everything Run builds, so shutdown can undo it in order.
type parts struct {
	rdb      redis.UniversalClient
	gate     durable.Durability // nil with the embedded Redis: nothing to wait for
	closers  []func()
	ledger   *ledger.Ledger
	intake   *intake.Intake
	worker   *queue.Worker
	host     *badgr.Client
	registry *prometheus.Registry
	webhook  *webhook.Handler
	consumer *eventbus.Consumer // reads the Open edX event bus (work, run); status only (serve)
	consume  bool
	enqueuer *queue.Enqueuer
	mapping  *rules.Mapping
	connOpt  asynq.RedisConnOpt // for the dashboard, which opens its own connection

	// announcer publishes the bridge's awards and revocations on the event bus (work, run).
	announcer *announce.Publisher
}

// Run serves until ctx is cancelled (SIGTERM), then shuts down: listeners stop accepting, in-flight
// jobs get BRIDGE_SHUTDOWN_GRACE, connections close. A nil error means a clean exit.
func (a *App) Run(ctx context.Context) error {
	cfg := a.cfg
	dev := cfg.DevMode(a.command)
	p := &parts{registry: prometheus.NewRegistry()}
	defer func() {
		for i := len(p.closers) - 1; i >= 0; i-- {
			p.closers[i]()
		}
	}()
	p.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	bgctx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	p.closers = append(p.closers, stopBackground)
	var devInfo devSetup
	web := a.command == CmdRun || a.command == CmdServe
	work := a.command == CmdRun || a.command == CmdWork
	// Local problems first: a bad mapping stops the start before any connection is made.
	if err := cfg.CheckMode(a.command); err != nil {
		return err
	}
	bus := work && cfg.EventBusRedisURL != ""
	var m *rules.Mapping
	if web || bus {
		var err error
		if m, err = a.loadMapping(dev); err != nil {
			return err
		}
	}
	if err := a.openRedis(bgctx, dev, p); err != nil {
		return err
	}

	p.ledger = ledger.New(p.rdb, ledger.Options{EventRetention: cfg.EventRetention})
	aclient := asynq.NewClientFromRedisClient(p.rdb)
	lease := reconcile.Lease(cfg.BadgrTimeout)
	enq := queue.NewEnqueuer(aclient, p.ledger, jobTimeout(lease))
	p.enqueuer, p.mapping = enq, m

	if web || bus {
		p.intake = &intake.Intake{Ledger: p.ledger, Mapping: m, Enqueuer: enq, Log: a.log, Metrics: intake.NewMetrics(p.registry),
			RecordAll: cfg.LearnerRecord == "all", Unmapped: a.startUnmapped(bgctx, p)}
		if p.gate != nil {
			p.intake.Durable = p.gate
		}
	}
	if cfg.EventBusRedisURL != "" {
		if err := a.openEventBus(p, bus); err != nil {
			return err
		}
	}
	if web {
		auth, err := webhook.NewAuth(cfg.WebhookSecrets, cfg.WebhookTokens, cfg.WebhookQueryTokens)
		if err != nil {
			return err
		}
		if dev && !auth.Configured() {
			devInfo.webhookToken = randomToken()
			auth, _ = webhook.NewAuth(nil, []string{devInfo.webhookToken}, nil)
		}
		if !auth.Configured() {
			a.log.Warn("no webhook credential configured: every webhook is refused (set BRIDGE_WEBHOOK_SECRETS, BRIDGE_WEBHOOK_TOKENS or BRIDGE_WEBHOOK_QUERY_TOKENS)")
		}
		p.webhook = &webhook.Handler{Auth: auth, Intake: p.intake, Log: a.log, Metrics: webhook.NewMetrics(p.registry), MaxInflight: cfg.WebhookMaxInflight}
	}
	if dev && a.cfg.AdminToken == "" {
		devInfo.adminToken = randomToken()
		a.cfg.AdminToken = devInfo.adminToken
	}
	if work || cfg.BadgrURL != "" {
		// serve only reads the shared login state from Redis for /v1/status; it never calls the host.
		if err := a.openHost(bgctx, dev && work, p, &devInfo); err != nil {
			return err
		}
	}
	// Owed and parked rows and the login block, read at scrape time (every role has a ledger).
	p.registry.MustRegister(newStateGauges(p.ledger, p.host))
	if work {
		rec := &reconcile.Reconciler{
			Ledger: p.ledger, Host: p.host, Scheduler: enq, Log: a.log, Settle: cfg.Settle,
			Lease: lease, MaxRetry: cfg.MaxRetry, Metrics: reconcile.NewMetrics(p.registry),
			Announce: cfg.EventBusBadgeStream != "",
		}
		// A claimed row is looked at again only after a job could have run a whole lease.
		sw := &queue.Sweeper{Ledger: p.ledger, Enqueuer: enq, Log: a.log, Requeue: lease + 30*time.Second, Metrics: queue.NewMetrics(p.registry)}
		p.worker = queue.NewWorker(p.rdb, queue.WorkerConfig{Concurrency: cfg.WorkerConcurrency, ShutdownGrace: cfg.ShutdownGrace}, rec, sw, a.log)
		if err := a.openAnnouncer(p); err != nil {
			return err
		}
	}
	return a.serve(ctx, p, web, dev, &devInfo)
}

// startUnmapped starts the tracker of course keys ignored because no rule maps them: hourly
// warnings, and counts written to the list every replica shares (GET /v1/status). It stops, with
// a last write, before the Redis client closes.
func (a *App) startUnmapped(ctx context.Context, p *parts) *unmapped.Tracker {
	t := unmapped.New(unmapped.Options{Log: a.log, Store: unmapped.NewStore(p.rdb, keyPrefix)})
	tctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.Run(tctx)
	}()
	// Closers run last first: this one was added after the Redis client's.
	p.closers = append(p.closers, func() { stop(); <-done })
	return t
}

// jobTimeout is asynq's run limit of a reconcile job: above the lease, so that the lease, which
// fences every write, always ends first.
func jobTimeout(lease time.Duration) time.Duration { return lease + 10*time.Second }

func (a *App) openRedis(ctx context.Context, dev bool, p *parts) error {
	cfg := a.cfg
	if dev && cfg.RedisURL == "" && cfg.RedisSentinelMaster == "" && len(cfg.RedisClusterAddrs) == 0 {
		mr, rdb, err := embeddedRedis(ctx, a.log)
		if err != nil {
			return err
		}
		p.rdb, p.connOpt = rdb, asynq.RedisClientOpt{Addr: mr.Addr()}
		p.closers = append(p.closers, mr.Close, func() { _ = rdb.Close() })
		return nil
	}
	if err := cfg.RequireQueue(); err != nil {
		return err
	}
	rdb, err := openRedis(cfg)
	if err != nil {
		return err
	}
	p.rdb, p.connOpt = rdb, connOpt(cfg)
	p.closers = append(p.closers, func() { _ = rdb.Close() })
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		return fmt.Errorf("queue Redis unreachable: %w", err)
	}
	p.gate = durableGate(ctx, cfg, rdb, a.log)
	return nil
}

// keyPrefix is the ledger's key prefix, under which the durability marker lives too.
const keyPrefix = "bb:"

// durableGate prepares the durability wait of the intake (BRIDGE_REDIS_MIN_REPLICAS, WAITAOF)
// and detects what applies; the gate logs what it found. A detection that fails here is only a
// warning: the gate detects again before its next wait.
func durableGate(ctx context.Context, cfg config.Config, rdb redis.UniversalClient, log *slog.Logger) durable.Durability {
	g := durable.Open(rdb, durable.Options{MinReplicas: cfg.RedisMinReplicas, Timeout: cfg.RedisWaitTimeout, Prefix: keyPrefix, Log: log})
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := g.Detect(dctx); err != nil {
		log.Warn("could not detect the queue Redis durability settings at start; detecting again before the next wait", "err", err)
	}
	return g
}

// openEventBus connects to the Open edX event-bus Redis. consume is true where the consumer
// runs (run, work); serve uses it only for lag and pending in /v1/status.
func (a *App) openEventBus(p *parts, consume bool) error {
	opt, err := redis.ParseURL(a.cfg.EventBusRedisURL)
	if err != nil {
		return errors.New("BRIDGE_EVENTBUS_REDIS_URL: not a valid Redis URL")
	}
	busRdb := redis.NewClient(opt)
	p.closers = append(p.closers, func() { _ = busRdb.Close() })
	var reg prometheus.Registerer
	if consume {
		reg = p.registry
	}
	p.consumer = eventbus.New(busRdb, p.rdb, p.intake, eventbus.Config{
		Streams: a.cfg.EventBusStreams, Group: a.cfg.EventBusGroup, Start: a.cfg.EventBusStart,
	}, a.log.With("component", "eventbus"), reg)
	p.consume = consume
	p.registry.MustRegister(p.consumer.Collector())
	return nil
}

func (a *App) loadMapping(dev bool) (*rules.Mapping, error) {
	if a.cfg.MappingFile != "" {
		m, err := rules.Load(a.cfg.MappingFile)
		if err != nil {
			return nil, fmt.Errorf("BRIDGE_MAPPING_FILE: %w", err)
		}
		if len(m.Rules) == 0 {
			a.log.Warn("the mapping file maps no badge: every event will be ignored", "file", a.cfg.MappingFile)
		}
		for _, w := range m.WarningLines() {
			a.log.Warn("mapping file: "+w, "file", a.cfg.MappingFile)
		}
		return m, nil
	}
	if dev {
		return rules.Demo(DemoBadgeClass), nil
	}
	return nil, errors.New("BRIDGE_MAPPING_FILE: not set; without a mapping no event earns a badge")
}

func (a *App) openHost(ctx context.Context, dev bool, p *parts, d *devSetup) error {
	cfg := a.cfg
	bc := badgr.Config{
		BaseURL: cfg.BadgrURL, Username: cfg.BadgrUsername, Password: cfg.BadgrPassword,
		ClientID: cfg.BadgrClientID, ClientSecret: cfg.BadgrClientSecret, Scope: cfg.BadgrScope,
		Timeout: cfg.BadgrTimeout, RateLimit: cfg.BadgrRateLimit,
	}
	if cfg.BadgrURL == "" {
		if !dev {
			return cfg.RequireBadgeHost()
		}
		var classes []string
		if p.mapping != nil {
			classes = p.mapping.BadgeClasses()
		}
		url, user, pass, stop, err := startSandbox(a.log, classes)
		if err != nil {
			return err
		}
		p.closers = append(p.closers, stop)
		bc.BaseURL, bc.Username, bc.Password = url, user, pass
		d.sandboxURL = url
	}
	p.host = badgr.New(bc, p.rdb, a.log.With("component", "badgr"))
	return nil
}

func (a *App) serve(ctx context.Context, p *parts, web, dev bool, d *devSetup) error {
	var publicSrv *http.Server
	var pubLn net.Listener
	var err error
	if web {
		pubLn, err = listen(a.cfg.HTTPAddr, publicMaxConns(a.cfg.WebhookMaxInflight))
		if err != nil {
			return fmt.Errorf("BRIDGE_HTTP_ADDR: %w", err)
		}
		publicSrv = newServer(a.publicRoutes(p))
		a.HTTPAddr = pubLn.Addr().String()
	}
	admLn, err := listen(a.cfg.AdminAddr, adminMaxConns)
	if err != nil {
		if pubLn != nil {
			pubLn.Close()
		}
		return fmt.Errorf("BRIDGE_ADMIN_ADDR: %w", err)
	}
	a.AdminAddr = admLn.Addr().String()
	adminSrv := newServer(a.adminRoutes(p, web))

	if p.worker != nil {
		if err := p.worker.Start(ctx); err != nil {
			return err
		}
	}
	busCtx, stopBus := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBus()
	busDone := make(chan struct{})
	if p.consume {
		go func() {
			defer close(busDone)
			if err := p.consumer.Run(busCtx); err != nil {
				a.log.Error("event-bus consumer stopped", "err", err.Error())
			}
		}()
	} else {
		close(busDone)
	}
	announceDone := a.runAnnouncer(busCtx, p)
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	for _, s := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{publicSrv, pubLn}, {adminSrv, admLn}} {
		if s.srv == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	a.log.Info("bridge started", "command", a.command, "dev", dev, "http_addr", a.HTTPAddr, "admin_addr", a.AdminAddr)
	if dev {
		a.printDevBanner(d)
	}
	close(a.Ready)

	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("shutting down", "grace", a.cfg.ShutdownGrace.String())
	case runErr = <-errc:
		a.log.Error("listener failed; shutting down", "err", runErr)
	}
	// Stop taking work first: no new jobs, no new event-bus entries. The consumer acknowledges
	// only what intake recorded: stopping it loses nothing.
	if p.worker != nil {
		p.worker.Stop()
	}
	stopBus()
	// Then one grace for everything in flight: the listeners drain while the jobs finish, side
	// by side, so SIGTERM never costs more than BRIDGE_SHUTDOWN_GRACE (asynq's ShutdownTimeout
	// is the same grace and starts now; it hands unfinished jobs back to the queue).
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownGrace)
	defer cancel()
	var drain sync.WaitGroup
	for _, s := range []*http.Server{publicSrv, adminSrv} {
		if s == nil {
			continue
		}
		drain.Add(1)
		go func() {
			defer drain.Done()
			if err := s.Shutdown(sctx); err != nil {
				a.log.Warn("listener not drained within the grace; closing its connections", "err", err)
				_ = s.Close()
			}
		}()
	}
	if p.worker != nil {
		drain.Add(1)
		go func() {
			defer drain.Done()
			p.worker.Shutdown()
		}()
	}
	drain.Add(2)
	go func() {
		defer drain.Done()
		<-busDone
	}()
	go func() {
		defer drain.Done()
		<-announceDone
	}()
	drain.Wait()
	wg.Wait()
	a.log.Info("bridge stopped")
	return runErr
}
