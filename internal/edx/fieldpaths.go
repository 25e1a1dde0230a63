package edx

import (
	"slices"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"
)

// metadataFields are the EventsMetadata fields as EventsMetadata.to_json_data() names them.
var metadataFields = []string{"event_type", "id", "minorversion", "source", "sourcehost", "time", "sourcelib"}

const metadataKey = "event_metadata"

// fieldPaths lists the dotted paths of the leaf fields an event of this type may carry: the
// metadata and, for a type with an embedded schema, every payload field the schema defines.
// The schemas are the single source, so a flattened body is read exactly as the Avro one.
func fieldPaths(eventType string) []string {
	var paths []string
	for _, f := range metadataFields {
		paths = append(paths, metadataKey+"."+f)
	}
	if s, err := schemaFor(eventType); err == nil {
		paths = appendLeafPaths(paths, s, "", nil)
	}
	return paths
}

// appendLeafPaths walks records (also inside unions such as ["null", "UserData"]) down to
// their non-record fields. onStack stops a recursive schema.
func appendLeafPaths(paths []string, s avro.Schema, prefix string, onStack []*avro.RecordSchema) []string {
	switch s := s.(type) {
	case *avro.RefSchema:
		return appendLeafPaths(paths, s.Schema(), prefix, onStack)
	case *avro.RecordSchema:
		if slices.Contains(onStack, s) {
			return paths
		}
		onStack = append(onStack, s)
		for _, f := range s.Fields() {
			paths = appendLeafPaths(paths, f.Type(), joinPath(prefix, f.Name()), onStack)
		}
		return paths
	case *avro.UnionSchema:
		var leaf bool
		for _, b := range s.Types() {
			if isRecord(b) {
				paths = appendLeafPaths(paths, b, prefix, onStack)
			} else {
				leaf = true
			}
		}
		if leaf && !slices.Contains(paths, prefix) {
			paths = append(paths, prefix)
		}
		return paths
	}
	return append(paths, prefix)
}

// isRecord reports whether s is a record, directly or by reference.
func isRecord(s avro.Schema) bool {
	if ref, ok := s.(*avro.RefSchema); ok {
		s = ref.Schema()
	}
	return s.Type() == avro.Record
}

// joinPath appends a field name to a dotted path.
func joinPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// flatKey is how webhook plugins flatten a field path: the names joined with "_".
func flatKey(path string) string { return strings.ReplaceAll(path, ".", "_") }

var flatIndexes sync.Map // event type → map[flat key]path

// flatIndex maps the flattened keys of an event type to their field paths. Keys are matched
// whole against this index, never split on "_", because field names contain "_" themselves
// (course_passing_status_course_ccx_course_key). A key two paths would share is left out
// rather than guessed.
func flatIndex(eventType string) map[string]string {
	if idx, ok := flatIndexes.Load(eventType); ok {
		return idx.(map[string]string)
	}
	idx := map[string]string{}
	ambiguous := map[string]bool{}
	for _, p := range fieldPaths(eventType) {
		k := flatKey(p)
		if _, dup := idx[k]; dup {
			ambiguous[k] = true
		}
		idx[k] = p
	}
	for k := range ambiguous {
		delete(idx, k)
	}
	// Only types with a schema are cached: they are few, while an unknown type is whatever
	// a sender wrote and must not grow the cache.
	if _, err := schemaFor(eventType); err == nil {
		flatIndexes.Store(eventType, idx)
	}
	return idx
}
