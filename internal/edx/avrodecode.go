package edx

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/hamba/avro/v2"
)

// DecodeAvro decodes the event_data of an event-bus entry: schemaless Avro binary (no container
// header, no schema id), read with the embedded schema of eventType. The result is the
// top-level record, e.g. {"certificate": {...}}; records are map[string]any, long and int are
// int64, float and double float64, bytes and fixed []byte, null nil, and a union gives its
// branch's value. Errors wrap ErrUndecodable, or are *UnsupportedTypeError when no schema is known.
func DecodeAvro(eventType string, data []byte) (map[string]any, error) {
	c, err := loadAvroCodec()
	if err != nil {
		return nil, err
	}
	s, ok := c.schemas[eventType]
	if !ok {
		return nil, &UnsupportedTypeError{Type: eventType}
	}
	v, err := decodeAvro(c.api, s, data)
	if err != nil {
		return nil, err
	}
	rec, _ := v.(map[string]any) // the top-level schema is a record
	return rec, nil
}

// decodeAvro decodes one complete value of schema s: nothing may follow it.
//
// hamba/avro reads the primitives (varints, lengths bounded by MaxByteSliceSize, booleans),
// while the walk over the schema is ours, for what the library's generic decoding does not
// give: it reports data cut off inside its last varint as success (Unmarshal takes the
// wrapped io.EOF for a clean end), ignores trailing bytes, names no field in its errors, accepts invalid UTF-8, bounds neither
// recursion nor map entries, and wraps union values as {"branch name": value}.
func decodeAvro(api avro.API, s avro.Schema, data []byte) (any, error) {
	d := avroDecoder{r: avro.NewReader(nil, 0, avro.WithReaderConfig(api)).Reset(data)}
	v, err := d.value(s, 0)
	if err == nil {
		if n := leftOver(d.r); n > 0 {
			err = fmt.Errorf("%d bytes left over after the value", n)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: event_data: %w", ErrUndecodable, err)
	}
	return v, nil
}

// leftOver counts the bytes the reader has not consumed. The reader exposes no position, so it
// reads them one by one; this is only the length of the input at worst.
func leftOver(r *avro.Reader) int {
	var b [1]byte
	n := 0
	for {
		r.Read(b[:])
		if r.Error != nil {
			return n
		}
		n++
	}
}

type avroDecoder struct {
	r     *avro.Reader
	items int // array items and map entries read so far
}

// avroPathError locates a decoding problem by its field path.
type avroPathError struct {
	path []string // outermost first
	err  error
}

func (e *avroPathError) Error() string {
	return strings.Join(e.path, ".") + ": " + e.err.Error()
}

func (e *avroPathError) Unwrap() error { return e.err }

// within prefixes an error with the field or element it happened in.
func within(name string, err error) error {
	var pe *avroPathError
	if errors.As(err, &pe) {
		pe.path = append([]string{name}, pe.path...)
		return err
	}
	return &avroPathError{path: []string{name}, err: err}
}

var errTruncated = errors.New("truncated: the data ends inside the value")

// check turns the reader's sticky error into ours. Running out of input shows up as io.EOF or
// io.ErrUnexpectedEOF, possibly wrapped; other errors are the library's own description.
func (d *avroDecoder) check() error {
	err := d.r.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errTruncated
	}
	return err
}

func (d *avroDecoder) value(s avro.Schema, depth int) (any, error) {
	if depth > maxAvroDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxAvroDepth)
	}
	switch s := s.(type) {
	case *avro.NullSchema:
		return nil, nil
	case *avro.RefSchema:
		return d.value(s.Schema(), depth)
	case *avro.RecordSchema:
		rec := make(map[string]any, len(s.Fields()))
		for _, f := range s.Fields() {
			v, err := d.value(f.Type(), depth+1)
			if err != nil {
				return nil, within(f.Name(), err)
			}
			rec[f.Name()] = v
		}
		return rec, nil
	case *avro.UnionSchema:
		i, err := d.index(len(s.Types()), "union branch")
		if err != nil {
			return nil, err
		}
		return d.value(s.Types()[i], depth+1)
	case *avro.EnumSchema:
		i, err := d.index(len(s.Symbols()), "enum index")
		if err != nil {
			return nil, err
		}
		return s.Symbols()[i], nil
	case *avro.FixedSchema:
		b := make([]byte, s.Size()) // the size comes from the embedded schema, not the data
		d.r.Read(b)
		return b, d.check()
	case *avro.ArraySchema:
		out := []any{}
		err := d.blocks(func() error {
			v, err := d.value(s.Items(), depth+1)
			if err != nil {
				return within(fmt.Sprintf("[%d]", len(out)), err)
			}
			out = append(out, v)
			return nil
		})
		return out, err
	case *avro.MapSchema:
		out := map[string]any{}
		err := d.blocks(func() error {
			k, err := d.string()
			if err != nil {
				return within("(a key)", err)
			}
			v, err := d.value(s.Values(), depth+1)
			if err != nil {
				return within(show(k), err)
			}
			out[k] = v
			return nil
		})
		return out, err
	case *avro.PrimitiveSchema:
		return d.primitive(s.Type())
	}
	return nil, fmt.Errorf("unsupported schema type %s", s.Type())
}

// primitive reads a value of a primitive type; logical types are read as their underlying type.
func (d *avroDecoder) primitive(t avro.Type) (any, error) {
	var v any
	switch t {
	case avro.Boolean:
		v = d.r.ReadBool()
	case avro.Int:
		// Read as a long and range-checked: the library's int reader wraps out-of-range values.
		n := d.r.ReadLong()
		if err := d.check(); err != nil {
			return nil, err
		}
		if n < math.MinInt32 || n > math.MaxInt32 {
			return nil, fmt.Errorf("int %d out of range", n)
		}
		v = n
	case avro.Long:
		v = d.r.ReadLong()
	case avro.Float:
		v = float64(d.r.ReadFloat())
	case avro.Double:
		v = d.r.ReadDouble()
	case avro.Bytes:
		v = d.r.ReadBytes()
	case avro.String:
		return d.string()
	default:
		return nil, fmt.Errorf("unsupported schema type %s", t)
	}
	if err := d.check(); err != nil {
		return nil, err
	}
	return v, nil
}

// string reads an Avro string, which must be UTF-8 (the Python reader would fail on it too).
func (d *avroDecoder) string() (string, error) {
	s := d.r.ReadString()
	if err := d.check(); err != nil {
		return "", err
	}
	if !utf8.ValidString(s) {
		return "", errors.New("string is not valid UTF-8")
	}
	return s, nil
}

// index reads a union branch or enum index and checks it against n choices.
func (d *avroDecoder) index(n int, what string) (int, error) {
	i := d.r.ReadLong()
	if err := d.check(); err != nil {
		return 0, err
	}
	if i < 0 || i >= int64(n) {
		return 0, fmt.Errorf("%s %d out of range (%d choices)", what, i, n)
	}
	return int(i), nil
}

// blocks reads the blocks of an array or map: a count, then that many items, until a zero
// count. A negative count is followed by the block's size in bytes, which only serves
// skipping; the items are read all the same.
func (d *avroDecoder) blocks(item func() error) error {
	for {
		n := d.r.ReadLong()
		if err := d.check(); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if n < 0 {
			if n == math.MinInt64 {
				return errors.New("block count out of range")
			}
			n = -n
			size := d.r.ReadLong()
			if err := d.check(); err != nil {
				return err
			}
			if size < 0 {
				return fmt.Errorf("block size %d out of range", size)
			}
		}
		// Checked before looping: a zero-size item type (null) could otherwise spin on a huge
		// count without consuming input.
		if n > int64(maxAvroItems-d.items) {
			return fmt.Errorf("more than %d array items or map entries", maxAvroItems)
		}
		d.items += int(n)
		for range n {
			if err := item(); err != nil {
				return err
			}
		}
	}
}
