package app

import (
	"context"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/badgebridge/bridge/internal/admin"
	"github.com/badgebridge/bridge/internal/eventbus"
	"github.com/badgebridge/bridge/internal/queue"
	"github.com/badgebridge/bridge/internal/unmapped"
)

func (a *App) newEcho() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Use(a.accessLog)
	return e
}

// accessLog logs each request by path only: a query string may carry a webhook token.
func (a *App) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		path := c.Request().URL.Path
		if path == "/healthz" || path == "/readyz" || path == "/metrics" {
			return nil
		}
		a.log.Info("http request", "method", c.Request().Method, "path", path,
			"status", c.Response().Status, "duration_ms", time.Since(start).Milliseconds())
		return nil
	}
}

func (a *App) publicRoutes(p *parts) http.Handler {
	e := a.newEcho()
	e.POST("/v1/webhooks/openedx", p.webhook.ServeWebhook)
	a.health(e, p, false)
	return e
}

func (a *App) adminRoutes(p *parts, web bool) http.Handler {
	e := a.newEcho()
	a.health(e, p, p.worker != nil)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(p.registry, promhttp.HandlerOpts{})))
	if web {
		api := &admin.API{
			Ledger: p.ledger, Token: a.cfg.AdminToken, Mapping: p.mapping, Enqueue: p.enqueuer.Enqueue,
			Inspector: asynq.NewInspectorFromRedisClient(p.rdb), Queue: queue.Queue,
			QueuedJob: p.ledger.QueuedJob, Unmapped: unmapped.NewStore(p.rdb, keyPrefix),
			EraseDeadLetters: func(ctx context.Context, uid int64) (int, error) {
				// Dead letters are in the bridge's own Redis, under the configured streams.
				return eventbus.EraseDeadLetters(ctx, p.rdb, a.cfg.EventBusStreams, uid)
			},
		}
		if p.host != nil {
			api.HostLogin = p.host.LoginBlockedUntil
		}
		if p.consumer != nil {
			api.BusStatus = func(ctx context.Context) (any, error) { return p.consumer.Status(ctx) }
		}
		if p.connOpt != nil {
			dash, closeDash := admin.Dashboard(p.connOpt, a.cfg.AdminToken)
			p.closers = append(p.closers, closeDash)
			e.Any(admin.DashboardRoot, echo.WrapHandler(http.RedirectHandler(admin.DashboardRoot+"/", http.StatusMovedPermanently)))
			e.Any(admin.DashboardRoot+"/*", echo.WrapHandler(dash))
		}
		api.Register(e.Group(""))
	}
	return e
}

// health mounts /healthz (the process answers) and /readyz (Redis answers and, for workers, the
// badge host login is not blocked).
func (a *App) health(e *echo.Echo, p *parts, worker bool) {
	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok", "message": "alive"})
	})
	e.GET("/readyz", func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		if err := p.rdb.Ping(ctx).Err(); err != nil {
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unready", "message": "queue Redis unreachable"})
		}
		if worker && p.host != nil {
			until, err := p.host.LoginBlockedUntil(ctx)
			if err == nil && !until.IsZero() {
				return c.JSON(http.StatusServiceUnavailable, map[string]string{
					"status": "unready", "message": "badge host login blocked until " + until.UTC().Format(time.RFC3339),
				})
			}
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "ready", "message": "ready"})
	})
}
