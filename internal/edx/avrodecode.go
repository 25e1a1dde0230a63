package edx

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// Limits of the Avro decoder. Entries come from a Redis that other services write to, so every
// length, count and nesting level is checked before it is trusted.
const (
	maxAvroDepth = 32      // nesting of records, unions, arrays and maps
	maxAvroItems = 1 << 16 // array items and map entries in one value, all blocks together
)

// DecodeAvro decodes the event_data of an event-bus entry: schemaless Avro binary (no container
// header, no schema id), read with the embedded schema of eventType. The result is the
// top-level record, e.g. {"certificate": {...}}; records are map[string]any, long and int are
// int64, float and double float64, bytes []byte, null nil, and a union gives its branch's
// value. Errors wrap ErrUndecodable, or are *UnsupportedTypeError when no schema is known.
func DecodeAvro(eventType string, data []byte) (map[string]any, error) {
	s, err := schemaFor(eventType)
	if err != nil {
		return nil, err
	}
	v, err := decodeAvro(s, data)
	if err != nil {
		return nil, err
	}
	rec, _ := v.(map[string]any) // the top-level schema is a record
	return rec, nil
}

// decodeAvro decodes one complete value of schema s.
func decodeAvro(s *avroSchema, data []byte) (any, error) {
	r := avroReader{buf: data}
	v, err := r.value(s, 0)
	if err == nil && r.pos != len(r.buf) {
		err = r.fail("%d bytes left over after the value", len(r.buf)-r.pos)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: event_data: %w", ErrUndecodable, err)
	}
	return v, nil
}

type avroReader struct {
	buf   []byte
	pos   int
	items int // array items and map entries read so far
}

// avroError locates a decoding problem: the byte offset and the field path.
type avroError struct {
	offset int
	path   []string // innermost last
	msg    string
}

func (e *avroError) Error() string {
	if len(e.path) == 0 {
		return fmt.Sprintf("at byte %d: %s", e.offset, e.msg)
	}
	return fmt.Sprintf("%s at byte %d: %s", strings.Join(e.path, "."), e.offset, e.msg)
}

func (r *avroReader) fail(format string, args ...any) *avroError {
	return r.failAt(r.pos, format, args...)
}

// failAt reports a problem with the value that starts at offset.
func (r *avroReader) failAt(offset int, format string, args ...any) *avroError {
	return &avroError{offset: offset, msg: fmt.Sprintf(format, args...)}
}

// within prefixes an error with the field it happened in.
func within(name string, err error) error {
	if ae, ok := err.(*avroError); ok {
		ae.path = append([]string{name}, ae.path...)
	}
	return err
}

func (r *avroReader) value(s *avroSchema, depth int) (any, error) {
	if depth > maxAvroDepth {
		return nil, r.fail("nested deeper than %d levels", maxAvroDepth)
	}
	switch s.kind {
	case avroNull:
		return nil, nil
	case avroBoolean:
		if r.pos >= len(r.buf) {
			return nil, r.fail("truncated boolean")
		}
		b := r.buf[r.pos]
		if b > 1 {
			return nil, r.fail("boolean byte is %#x, want 0 or 1", b)
		}
		r.pos++
		return b == 1, nil
	case avroInt:
		start := r.pos
		n, err := r.long()
		if err != nil {
			return nil, err
		}
		if n < math.MinInt32 || n > math.MaxInt32 {
			return nil, r.failAt(start, "int %d out of range", n)
		}
		return n, nil
	case avroLong:
		return r.long()
	case avroFloat:
		b, err := r.fixed(4)
		if err != nil {
			return nil, err
		}
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b))), nil
	case avroDouble:
		b, err := r.fixed(8)
		if err != nil {
			return nil, err
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(b)), nil
	case avroBytes:
		b, err := r.bytes()
		if err != nil {
			return nil, err
		}
		return append([]byte(nil), b...), nil
	case avroString:
		return r.string()
	case avroFixed:
		b, err := r.fixed(s.size)
		if err != nil {
			return nil, err
		}
		return append([]byte(nil), b...), nil
	case avroEnum:
		start := r.pos
		i, err := r.long()
		if err != nil {
			return nil, err
		}
		if i < 0 || i >= int64(len(s.symbols)) {
			return nil, r.failAt(start, "enum index %d out of range (%d symbols)", i, len(s.symbols))
		}
		return s.symbols[i], nil
	case avroUnion:
		start := r.pos
		i, err := r.long()
		if err != nil {
			return nil, err
		}
		if i < 0 || i >= int64(len(s.branches)) {
			return nil, r.failAt(start, "union branch %d out of range (%d branches)", i, len(s.branches))
		}
		return r.value(s.branches[i], depth+1)
	case avroRecord:
		rec := make(map[string]any, len(s.fields))
		for _, f := range s.fields {
			v, err := r.value(f.typ, depth+1)
			if err != nil {
				return nil, within(f.name, err)
			}
			rec[f.name] = v
		}
		return rec, nil
	case avroArray:
		var out []any
		err := r.blocks(func() error {
			v, err := r.value(s.items, depth+1)
			if err != nil {
				return within(fmt.Sprintf("[%d]", len(out)), err)
			}
			out = append(out, v)
			return nil
		})
		if out == nil && err == nil {
			out = []any{}
		}
		return out, err
	case avroMap:
		out := map[string]any{}
		err := r.blocks(func() error {
			k, err := r.string()
			if err != nil {
				return err
			}
			v, err := r.value(s.values, depth+1)
			if err != nil {
				return within(show(k), err)
			}
			out[k] = v
			return nil
		})
		return out, err
	}
	return nil, r.fail("unsupported schema kind %d", s.kind)
}

// blocks reads the blocks of an array or map: a count, then that many items, until a zero
// count. A negative count is followed by the block's size in bytes.
func (r *avroReader) blocks(item func() error) error {
	for {
		n, err := r.long()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if n < 0 {
			if n == math.MinInt64 {
				return r.fail("block count out of range")
			}
			n = -n
			size, err := r.long()
			if err != nil {
				return err
			}
			if size < 0 || size > int64(len(r.buf)-r.pos) {
				return r.fail("block size %d out of range (%d bytes left)", size, len(r.buf)-r.pos)
			}
		}
		// Checked before looping: a zero-size item type (null) could otherwise spin on a huge
		// count without consuming input.
		if n > int64(maxAvroItems-r.items) {
			return r.fail("more than %d array items or map entries", maxAvroItems)
		}
		r.items += int(n)
		for range n {
			if err := item(); err != nil {
				return err
			}
		}
	}
}

// long reads a zig-zag varint of at most 10 bytes.
func (r *avroReader) long() (int64, error) {
	var u uint64
	for i := 0; ; i++ {
		if r.pos >= len(r.buf) {
			return 0, r.fail("truncated number")
		}
		b := r.buf[r.pos]
		r.pos++
		if i == 9 && b > 1 {
			return 0, r.fail("number overflows 64 bits")
		}
		u |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			break
		}
	}
	return int64(u>>1) ^ -int64(u&1), nil
}

func (r *avroReader) fixed(n int) ([]byte, error) {
	if n < 0 || n > len(r.buf)-r.pos {
		return nil, r.fail("%d bytes needed, %d left", n, len(r.buf)-r.pos)
	}
	b := r.buf[r.pos : r.pos+n]
	r.pos += n
	return b, nil
}

func (r *avroReader) bytes() ([]byte, error) {
	start := r.pos
	n, err := r.long()
	if err != nil {
		return nil, err
	}
	if n < 0 || n > int64(len(r.buf)-r.pos) {
		return nil, r.failAt(start, "length %d out of range (%d bytes left)", n, len(r.buf)-r.pos)
	}
	return r.fixed(int(n))
}

// string reads an Avro string, which must be UTF-8 (the Python reader would fail on it too).
func (r *avroReader) string() (string, error) {
	start := r.pos
	b, err := r.bytes()
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", r.failAt(start, "string is not valid UTF-8")
	}
	return string(b), nil
}
