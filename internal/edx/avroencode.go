package edx

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"unicode/utf8"

	"github.com/hamba/avro/v2"
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
// record field missing from the map takes its schema default. Map entries go out in Go's map
// order (hamba/avro does not sort them), so only values without a map of several entries
// encode to the same bytes every time; no embedded schema has a map.
func EncodeAvro(eventType string, payload map[string]any) ([]byte, error) {
	c, err := loadAvroCodec()
	if err != nil {
		return nil, err
	}
	s, ok := c.schemas[eventType]
	if !ok {
		return nil, &UnsupportedTypeError{Type: eventType}
	}
	return encodeAvro(c.api, s, payload)
}

// encodeAvro writes v with hamba/avro once toAvro has put it in the shape the library expects.
func encodeAvro(api avro.API, s avro.Schema, v any) ([]byte, error) {
	native, err := toAvro(s, v, "", 0)
	if err != nil {
		return nil, fmt.Errorf("encode avro: %w", err)
	}
	b, err := api.Marshal(s, native)
	if err != nil {
		return nil, fmt.Errorf("encode avro: %w", err)
	}
	return b, nil
}

// toAvro converts the map shape DecodeAvro gives (and JSON gives) into the one hamba/avro
// encodes: a union value becomes {"branch name": value}, numbers take the Go type of their Avro
// type, and keys the schema does not define are dropped. It checks every value on the way, so
// an error names the field.
func toAvro(s avro.Schema, v any, path string, depth int) (any, error) {
	if depth > maxAvroDepth {
		return nil, fmt.Errorf("%s: nested deeper than %d levels", path, maxAvroDepth)
	}
	wrong := func(want string) error {
		return fmt.Errorf("%s: want %s, got %T", path, want, v)
	}
	switch s := s.(type) {
	case *avro.NullSchema:
		if v != nil {
			return nil, wrong("nil")
		}
		return nil, nil
	case *avro.RefSchema:
		return toAvro(s.Schema(), v, path, depth)
	case *avro.RecordSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, wrong("map[string]any")
		}
		out := make(map[string]any, len(s.Fields()))
		for _, f := range s.Fields() {
			fv, present := m[f.Name()]
			if !present {
				if !f.HasDefault() {
					return nil, fmt.Errorf("%s: missing", joinPath(path, f.Name()))
				}
				continue // the library writes the default
			}
			conv, err := toAvro(f.Type(), fv, joinPath(path, f.Name()), depth+1)
			if err != nil {
				return nil, err
			}
			out[f.Name()] = conv
		}
		return out, nil
	case *avro.UnionSchema:
		for _, b := range s.Types() {
			if (v == nil) != (b.Type() == avro.Null) {
				continue
			}
			if v == nil {
				return nil, nil
			}
			if conv, err := toAvro(b, v, path, depth+1); err == nil {
				return map[string]any{unionBranchName(b): conv}, nil
			}
		}
		return nil, fmt.Errorf("%s: no branch of the union accepts %T", path, v)
	case *avro.EnumSchema:
		str, ok := v.(string)
		if !ok {
			return nil, wrong("an enum symbol")
		}
		if !slices.Contains(s.Symbols(), str) {
			return nil, fmt.Errorf("%s: %q is not a symbol of %s", path, str, s.FullName())
		}
		return str, nil
	case *avro.FixedSchema:
		b, ok := v.([]byte)
		if !ok || len(b) != s.Size() {
			return nil, wrong(fmt.Sprintf("[]byte of length %d", s.Size()))
		}
		// The library writes fixed from a Go array of that length.
		arr := reflect.New(reflect.ArrayOf(len(b), reflect.TypeFor[byte]())).Elem()
		reflect.Copy(arr, reflect.ValueOf(b))
		return arr.Interface(), nil
	case *avro.ArraySchema:
		items, ok := v.([]any)
		if !ok {
			return nil, wrong("[]any")
		}
		out := make([]any, len(items))
		for i, item := range items {
			conv, err := toAvro(s.Items(), item, fmt.Sprintf("%s[%d]", path, i), depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = conv
		}
		return out, nil
	case *avro.MapSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, wrong("map[string]any")
		}
		out := make(map[string]any, len(m))
		for k, item := range m {
			conv, err := toAvro(s.Values(), item, joinPath(path, k), depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = conv
		}
		return out, nil
	case *avro.PrimitiveSchema:
		return primitiveToAvro(s.Type(), v, path)
	}
	return nil, fmt.Errorf("%s: unsupported schema type %s", path, s.Type())
}

func primitiveToAvro(t avro.Type, v any, path string) (any, error) {
	wrong := func(want string) error {
		return fmt.Errorf("%s: want %s, got %T", path, want, v)
	}
	switch t {
	case avro.Boolean:
		if _, ok := v.(bool); !ok {
			return nil, wrong("bool")
		}
		return v, nil
	case avro.Int, avro.Long:
		n, ok := asInt64(v)
		if !ok {
			return nil, wrong("an integer")
		}
		if t == avro.Long {
			return n, nil
		}
		if n < math.MinInt32 || n > math.MaxInt32 {
			return nil, fmt.Errorf("%s: %d out of int range", path, n)
		}
		return int32(n), nil
	case avro.Float, avro.Double:
		f, ok := asFloat64(v)
		if !ok {
			return nil, wrong("a number")
		}
		if t == avro.Float {
			return float32(f), nil
		}
		return f, nil
	case avro.String:
		str, ok := v.(string)
		if !ok {
			return nil, wrong("string")
		}
		if !utf8.ValidString(str) {
			return nil, fmt.Errorf("%s: string is not valid UTF-8", path)
		}
		return str, nil
	case avro.Bytes:
		if _, ok := v.([]byte); !ok {
			return nil, wrong("[]byte")
		}
		return v, nil
	}
	return nil, fmt.Errorf("%s: unsupported schema type %s", path, t)
}

// unionBranchName is the key under which the library expects a union's value: the full name of
// a named type, otherwise the type, with its logical type if it has one.
func unionBranchName(s avro.Schema) string {
	if ref, ok := s.(*avro.RefSchema); ok {
		s = ref.Schema()
	}
	if n, ok := s.(avro.NamedSchema); ok {
		return n.FullName()
	}
	name := string(s.Type())
	if l, ok := s.(avro.LogicalTypeSchema); ok && l.Logical() != nil {
		name += "." + string(l.Logical().Type())
	}
	return name
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
