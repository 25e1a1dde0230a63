package edx

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"unicode/utf8"
)

// EncodeAvro writes what the Open edX producer puts in an event-bus entry's event_data: the
// schemaless Avro binary of payload with the embedded schema of eventType. payload is the
// top-level record, e.g. {"certificate": {...}} (other keys, such as "event_metadata" of an
// openedx-events JSON body, are ignored), so EncodeAvro(t, DecodeAvro(t, b)) gives b back for
// canonical input. It is meant for tests and tools that produce bus entries.
//
// Accepted Go values: long/int from any integer type, an integral float64 or a json.Number;
// double/float from floats, integers or json.Number; string from string; bytes and fixed from
// []byte; records and maps from map[string]any; arrays from []any; enums from their symbol; a
// union takes nil as its null branch, otherwise the first branch that accepts the value. A
// record field missing from the map takes its schema default.
func EncodeAvro(eventType string, payload map[string]any) ([]byte, error) {
	s, err := schemaFor(eventType)
	if err != nil {
		return nil, err
	}
	return encodeAvro(s, payload)
}

func encodeAvro(s *avroSchema, v any) ([]byte, error) {
	w := avroWriter{}
	if err := w.value(s, v, "", 0); err != nil {
		return nil, fmt.Errorf("encode avro: %w", err)
	}
	return w.buf, nil
}

type avroWriter struct {
	buf []byte
}

func joinPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func (w *avroWriter) value(s *avroSchema, v any, path string, depth int) error {
	if depth > maxAvroDepth {
		return fmt.Errorf("%s: nested deeper than %d levels", path, maxAvroDepth)
	}
	wrong := func(want string) error {
		return fmt.Errorf("%s: want %s, got %T", path, want, v)
	}
	switch s.kind {
	case avroNull:
		if v != nil {
			return wrong("nil")
		}
		return nil
	case avroBoolean:
		b, ok := v.(bool)
		if !ok {
			return wrong("bool")
		}
		if b {
			w.buf = append(w.buf, 1)
		} else {
			w.buf = append(w.buf, 0)
		}
		return nil
	case avroInt, avroLong:
		n, ok := asInt64(v)
		if !ok {
			return wrong("an integer")
		}
		if s.kind == avroInt && (n < math.MinInt32 || n > math.MaxInt32) {
			return fmt.Errorf("%s: %d out of int range", path, n)
		}
		w.long(n)
		return nil
	case avroFloat, avroDouble:
		f, ok := asFloat64(v)
		if !ok {
			return wrong("a number")
		}
		if s.kind == avroFloat {
			w.buf = binary.LittleEndian.AppendUint32(w.buf, math.Float32bits(float32(f)))
		} else {
			w.buf = binary.LittleEndian.AppendUint64(w.buf, math.Float64bits(f))
		}
		return nil
	case avroString:
		str, ok := v.(string)
		if !ok {
			return wrong("string")
		}
		if !utf8.ValidString(str) {
			return fmt.Errorf("%s: string is not valid UTF-8", path)
		}
		w.long(int64(len(str)))
		w.buf = append(w.buf, str...)
		return nil
	case avroBytes:
		b, ok := v.([]byte)
		if !ok {
			return wrong("[]byte")
		}
		w.long(int64(len(b)))
		w.buf = append(w.buf, b...)
		return nil
	case avroFixed:
		b, ok := v.([]byte)
		if !ok || len(b) != s.size {
			return wrong(fmt.Sprintf("[]byte of length %d", s.size))
		}
		w.buf = append(w.buf, b...)
		return nil
	case avroEnum:
		str, ok := v.(string)
		if !ok {
			return wrong("an enum symbol")
		}
		for i, sym := range s.symbols {
			if sym == str {
				w.long(int64(i))
				return nil
			}
		}
		return fmt.Errorf("%s: %q is not a symbol of %s", path, str, s.name)
	case avroUnion:
		return w.union(s, v, path, depth)
	case avroRecord:
		m, ok := v.(map[string]any)
		if !ok {
			return wrong("map[string]any")
		}
		for _, f := range s.fields {
			fv, present := m[f.name]
			if !present {
				if !f.hasDefault {
					return fmt.Errorf("%s: missing", joinPath(path, f.name))
				}
				fv = f.def
			}
			if err := w.value(f.typ, fv, joinPath(path, f.name), depth+1); err != nil {
				return err
			}
		}
		return nil
	case avroArray:
		items, ok := v.([]any)
		if !ok {
			return wrong("[]any")
		}
		if len(items) > 0 {
			w.long(int64(len(items)))
			for i, item := range items {
				if err := w.value(s.items, item, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
					return err
				}
			}
		}
		w.long(0)
		return nil
	case avroMap:
		m, ok := v.(map[string]any)
		if !ok {
			return wrong("map[string]any")
		}
		if len(m) > 0 {
			w.long(int64(len(m)))
			// Sorted, so that one value always encodes to the same bytes.
			for _, k := range slices.Sorted(maps.Keys(m)) {
				item := m[k]
				w.long(int64(len(k)))
				w.buf = append(w.buf, k...)
				if err := w.value(s.values, item, joinPath(path, k), depth+1); err != nil {
					return err
				}
			}
		}
		w.long(0)
		return nil
	}
	return fmt.Errorf("%s: unsupported schema kind %d", path, s.kind)
}

// union writes the index of the first branch that accepts v, then v. Each attempt writes to a
// scratch writer so a failed branch leaves nothing behind.
func (w *avroWriter) union(s *avroSchema, v any, path string, depth int) error {
	for i, b := range s.branches {
		if (v == nil) != (b.kind == avroNull) {
			continue
		}
		scratch := avroWriter{}
		scratch.long(int64(i))
		if err := scratch.value(b, v, path, depth+1); err != nil {
			continue
		}
		w.buf = append(w.buf, scratch.buf...)
		return nil
	}
	return fmt.Errorf("%s: no branch of the union accepts %T", path, v)
}

// long writes a zig-zag varint.
func (w *avroWriter) long(n int64) {
	w.buf = binary.AppendUvarint(w.buf, uint64(n<<1)^uint64(n>>63))
}

func asInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int8:
		return int64(n), true
	case int16:
		return int64(n), true
	case int32:
		return int64(n), true
	case int64:
		return n, true
	case uint8:
		return int64(n), true
	case uint16:
		return int64(n), true
	case uint32:
		return int64(n), true
	case uint:
		return int64(n), n <= math.MaxInt64
	case uint64:
		return int64(n), n <= math.MaxInt64
	case float64:
		// What json.Unmarshal gives for numbers; only exact integers qualify.
		if n != math.Trunc(n) || n < math.MinInt64 || n >= math.MaxInt64 {
			return 0, false
		}
		return int64(n), true
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	}
	return 0, false
}

func asFloat64(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	if i, ok := asInt64(v); ok {
		return float64(i), true
	}
	return 0, false
}
