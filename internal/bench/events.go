package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/edx"
)

// A learner of the benchmark: user ids are unique across phases (each phase takes its own
// range), so every event is a new learner and a new row, as in the measurements.
func learnerEmail(uid int64) string { return fmt.Sprintf("learner%d@bench.example.org", uid) }

func eventID(uid int64) string { return fmt.Sprintf("bench-cert-%d", uid) }

func eventTime() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000000+00:00") }

// certificatePayload is the certificate of a learner as the openedx-events payload.
func certificatePayload(uid int64) map[string]any {
	return map[string]any{
		"user": map[string]any{
			"id": uid, "is_active": true,
			"pii": map[string]any{"username": fmt.Sprintf("learner%d", uid), "email": learnerEmail(uid), "name": "Bench Learner"},
		},
		"course":          map[string]any{"course_key": benchCourse, "display_name": "", "start": nil, "end": nil},
		"mode":            "honor",
		"grade":           "0.87",
		"download_url":    "",
		"name":            "Bench Learner",
		"current_status":  "downloadable",
		"previous_status": "",
	}
}

// webhookBody is an openedx-events JSON certificate-created body (contract 4.1, shape 1).
func webhookBody(uid int64) ([]byte, error) {
	b, err := json.Marshal(map[string]any{
		"event_metadata": map[string]any{
			"event_type": edx.TypeCertificateCreated, "id": eventID(uid), "minorversion": 0,
			"source": "openedx/lms/web", "sourcehost": "lms-1", "time": eventTime(), "sourcelib": []int{11, 2, 0},
		},
		"certificate": certificatePayload(uid),
	})
	if err != nil {
		return nil, fmt.Errorf("webhook body: %w", err)
	}
	return b, nil
}

// busValues is an event-bus entry as openedx/event-bus-redis writes it (contract 4.2): the
// schemaless Avro of the payload in event_data and the metadata fields beside it.
func busValues(uid int64) ([]any, error) {
	data, err := edx.EncodeAvro(edx.TypeCertificateCreated, map[string]any{"certificate": certificatePayload(uid)})
	if err != nil {
		return nil, fmt.Errorf("event-bus entry: %w", err)
	}
	return []any{
		"type", edx.TypeCertificateCreated,
		"id", eventID(uid),
		"source", "openedx/lms/web",
		"time", eventTime(),
		"minorversion", "0",
		"sourcehost", "lms-1",
		"sourcelib", "11.2.0",
		"event_data", data,
	}, nil
}

// produce writes the entries of learners first…first+n-1 to stream, pipelined, as a producer
// (MAXLEN ~ well above n, so none is trimmed before it is read).
func produce(ctx context.Context, c *redis.Client, stream string, first int64, n int) error {
	const batch = 500
	for done := 0; done < n; {
		pipe := c.Pipeline()
		for i := 0; i < batch && done < n; i++ {
			v, err := busValues(first + int64(done))
			if err != nil {
				return err
			}
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, MaxLen: int64(n) + 10000, Approx: true, Values: v})
			done++
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("XADD %s: %w", stream, err)
		}
	}
	return nil
}
