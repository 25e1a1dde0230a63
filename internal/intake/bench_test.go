package intake

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/queue"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/testutil"
)

// BenchmarkWebhookPath measures the hot path from a raw body to an accepted event: parsing
// alone, then parse + ledger transaction + enqueue + event record against a real redis-server,
// then a duplicate (answered from the event record). Compare them within one run:
//
//	go test -run '^$' -bench WebhookPath -benchtime 2000x ./internal/intake/
func BenchmarkWebhookPath(b *testing.B) {
	body, err := os.ReadFile("../edx/testdata/certificate-created.json")
	if err != nil {
		b.Fatal(err)
	}
	srv := testutil.StartRedis(b)
	rdb := srv.Client(b)
	m, err := rules.Parse([]byte(testutil.TestMapping))
	if err != nil {
		b.Fatal(err)
	}
	l := ledger.New(rdb, ledger.Options{})
	in := &Intake{
		Ledger: l, Mapping: m, Log: slog.New(slog.DiscardHandler),
		Enqueuer: queue.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), l, time.Minute),
	}
	parse := func(i int) edx.Event {
		ev, err := edx.ParseWebhook(edx.WebhookRequest{ContentType: "application/json", Body: body, Received: time.Now()})
		if err != nil {
			b.Fatal(err)
		}
		ev.ID = fmt.Sprintf("bench-%d", i)
		ev.UserID = int64(i + 1)
		ev.Course, _ = edx.ParseCourseKey(testutil.TestCourse)
		return ev
	}
	ctx := context.Background()
	next := 0 // the framework runs each sub-benchmark more than once: ids and learners stay new
	b.Run("parse", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			parse(i)
		}
	})
	b.Run("parse+intake", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			next++
			if res, err := in.Handle(ctx, parse(next), "bench"); err != nil || res.Status != StatusAccepted {
				b.Fatalf("%+v %v", res, err)
			}
		}
	})
	b.Run("duplicate", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if res, err := in.Handle(ctx, parse(1+i%next), "bench"); err != nil || res.Status != StatusDuplicate {
				b.Fatalf("%+v %v", res, err)
			}
		}
	})
}
