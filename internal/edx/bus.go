package edx

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// busMetadataFields are the entry fields openedx/event-bus-redis writes next to event_data;
// each carries the EventsMetadata field of the same name, type excepted.
var busMetadataFields = []string{"id", "source", "sourcehost", "time", "minorversion", "sourcelib"}

// DecodeBusEntry turns one Open edX Redis event-bus entry (its field/value map) into an Event.
// Entries of types the bridge does not act on give *UnsupportedTypeError without their data
// being decoded; an entry that cannot become an Event gives an error wrapping ErrUndecodable
// (and, for a bad field, a *FieldError). The payload goes through the same normalizer as
// webhook bodies, so both inputs accept and reject exactly the same values.
func DecodeBusEntry(fields map[string]string, received time.Time) (Event, error) {
	if received.IsZero() {
		received = time.Now()
	}
	eventType := strings.TrimSpace(fields["type"])
	if eventType == "" {
		return Event{}, fmt.Errorf("%w: entry has no type field", ErrUndecodable)
	}
	if _, ok := KindOf(eventType); !ok {
		return Event{}, &UnsupportedTypeError{Type: eventType}
	}
	data, ok := fields["event_data"]
	if !ok {
		return Event{}, fmt.Errorf("%w: entry has no event_data field", ErrUndecodable)
	}
	record, err := DecodeAvro(eventType, []byte(data))
	if err != nil {
		return Event{}, fmt.Errorf("%s entry: %w", eventType, err)
	}

	meta := map[string]any{"event_type": eventType}
	for _, f := range busMetadataFields {
		if v, ok := fields[f]; ok {
			meta[f] = v
		}
	}
	root := map[string]any{metadataKey: meta}
	for k, v := range record {
		root[k] = v
	}
	origin := func(path string) string {
		if f, ok := strings.CutPrefix(path, metadataKey+"."); ok {
			if f == "event_type" {
				f = "type"
			}
			return "field " + f
		}
		return "" // inside event_data, the path is the location
	}
	ev, err := normalize(document{root: root, origin: origin}, received)
	if err != nil {
		var ute *UnsupportedTypeError
		if errors.As(err, &ute) {
			return Event{}, err
		}
		return Event{}, fmt.Errorf("%s entry: %w: %w", eventType, ErrUndecodable, err)
	}
	return ev, nil
}
