package queue

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// WorkerConfig sizes a worker process.
type WorkerConfig struct {
	Concurrency   int
	ShutdownGrace time.Duration // in-flight jobs get this long on SIGTERM, then go back to the queue
}

// Worker runs reconcile jobs and the sweeper.
type Worker struct {
	srv     *asynq.Server
	mux     *asynq.ServeMux
	sweeper *Sweeper
	log     *slog.Logger
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// NewWorker builds a worker on the shared Redis client.
func NewWorker(rdb redis.UniversalClient, cfg WorkerConfig, rec Reconciler, sw *Sweeper, log *slog.Logger) *Worker {
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency:     cfg.Concurrency,
		Queues:          map[string]int{Queue: 1},
		ShutdownTimeout: cfg.ShutdownGrace,
		// Polling latency: the default 1 s idle sleep would add a second to every webhook.
		TaskCheckInterval:        200 * time.Millisecond,
		DelayedTaskCheckInterval: time.Second,
		Logger:                   asynqLogger{log.With("component", "asynq")},
		LogLevel:                 asynq.WarnLevel,
		// Jobs never retry through asynq (the ledger's owed marks do), so nothing here may
		// spend a budget; a crashed job's lease expiry is not the row's failure either.
		IsFailure: func(error) bool { return false },
	})
	mux := asynq.NewServeMux()
	mux.Handle(TypeReconcile, handler{rec: rec, log: log})
	mux.Handle(TypeBulk, bulkHandler{rec: rec, log: log})
	if sw.Inspector == nil {
		sw.Inspector = asynq.NewInspectorFromRedisClient(rdb)
	}
	return &Worker{srv: srv, mux: mux, sweeper: sw, log: log}
}

// Start begins processing; it returns once the server runs.
func (w *Worker) Start(ctx context.Context) error {
	if err := w.srv.Start(w.mux); err != nil {
		return fmt.Errorf("start workers: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.cancel = cancel
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.sweeper.Run(sctx)
	}()
	return nil
}

// Stop stops taking work: no new jobs are fetched and the sweeper queues no more. Jobs in
// flight go on; Shutdown waits for them.
func (w *Worker) Stop() {
	if w.cancel != nil {
		w.cancel()
	}
	w.srv.Stop()
}

// Shutdown stops taking work (Stop), lets in-flight jobs finish within the grace period (asynq
// puts the rest back to pending without spending a retry) and waits for the sweeper.
func (w *Worker) Shutdown() {
	w.Stop()
	w.srv.Shutdown()
	w.wg.Wait()
}

type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...)) }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...)) }
func (a asynqLogger) Fatal(args ...any) { a.l.Error(fmt.Sprint(args...)) }
