package edx

import (
	"embed"
	"fmt"
	"path"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"
)

// The Avro schemas of openedx/openedx-events (see schemas/README.md), one per event type, named
// <event type>.avsc. The event bus carries no schema, so the reader must bring the writer's.
//
//go:embed schemas/*.avsc
var schemaFiles embed.FS

// Limits of the Avro codec. Entries come from a Redis that other services write to, so every
// length, count and nesting level is checked before it is trusted.
const (
	maxAvroBytes = 4 << 20 // one string or bytes value; far above any event (the consumer takes 64 KiB)
	maxAvroDepth = 32      // nesting of records, unions, arrays and maps
	maxAvroItems = 1 << 16 // array items and map entries in one value, all blocks together
)

// avroCodec is what the embedded schemas need at run time, built once.
type avroCodec struct {
	api     avro.API
	schemas map[string]*avro.RecordSchema // by event type
}

// newAvroAPI configures hamba/avro. A string or bytes length is checked against
// MaxByteSliceSize before anything is allocated for it; MaxSliceAllocSize bounds the library's
// own array decoding, which DecodeAvro does not use but a future caller of the API might. An
// array or map is written as one block with its count only (no byte size), the canonical form
// fastavro writes too; a longer one would not decode anyway.
func newAvroAPI() avro.API {
	return avro.Config{
		MaxByteSliceSize:       maxAvroBytes,
		MaxSliceAllocSize:      maxAvroItems,
		BlockLength:            maxAvroItems,
		DisableBlockSizeHeader: true,
	}.Freeze()
}

// parseAvroSchema parses an .avsc document. Each document gets its own name cache: the
// library's default one is process-wide, and the files define the same record names.
func parseAvroSchema(doc []byte) (avro.Schema, error) {
	s, err := avro.ParseBytesWithCache(doc, "", &avro.SchemaCache{})
	if err != nil {
		return nil, fmt.Errorf("avro schema: %w", err)
	}
	return s, nil
}

// loadAvroCodec parses the embedded schemas once. Every file is one event type, so adding the
// .avsc of a new org.openedx.learning.* event is all it takes to decode it.
var loadAvroCodec = sync.OnceValues(func() (*avroCodec, error) {
	entries, err := schemaFiles.ReadDir("schemas")
	if err != nil {
		return nil, fmt.Errorf("read embedded schemas: %w", err)
	}
	c := &avroCodec{api: newAvroAPI(), schemas: make(map[string]*avro.RecordSchema, len(entries))}
	for _, e := range entries {
		eventType, ok := strings.CutSuffix(e.Name(), ".avsc")
		if !ok {
			continue
		}
		doc, err := schemaFiles.ReadFile(path.Join("schemas", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read schema %s: %w", e.Name(), err)
		}
		s, err := parseAvroSchema(doc)
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", e.Name(), err)
		}
		// openedx-events puts each signal's one keyword argument in a record of its own.
		rec, ok := s.(*avro.RecordSchema)
		if !ok || len(rec.Fields()) != 1 {
			return nil, fmt.Errorf("schema %s: want a record with one payload field", e.Name())
		}
		c.schemas[eventType] = rec
	}
	return c, nil
})

// eventSchemas gives the embedded schemas by event type.
func eventSchemas() (map[string]*avro.RecordSchema, error) {
	c, err := loadAvroCodec()
	if err != nil {
		return nil, err
	}
	return c.schemas, nil
}

// schemaFor gives the embedded schema of an event type.
func schemaFor(eventType string) (*avro.RecordSchema, error) {
	all, err := eventSchemas()
	if err != nil {
		return nil, err
	}
	s, ok := all[eventType]
	if !ok {
		return nil, &UnsupportedTypeError{Type: eventType}
	}
	return s, nil
}

// payloadKeyOf gives the payload key of an event type with an embedded schema ("certificate",
// "course_passing_status", …): the one field of its top-level record.
func payloadKeyOf(eventType string) (string, bool) {
	s, err := schemaFor(eventType)
	if err != nil {
		return "", false
	}
	return s.Fields()[0].Name(), true
}
