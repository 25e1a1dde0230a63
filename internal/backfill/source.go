package backfill

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/badgebridge/bridge/internal/edx"
)

// item is one record of the input.
type item struct {
	line        int       // line where the record starts, from 1
	ev          edx.Event // the event, when err and unsupported are nil
	err         error     // the record is invalid: what is wrong, never an e-mail address
	unsupported error     // a readable event of a type the bridge does not handle
}

// source yields the records of one input format in file order.
type source interface {
	// next gives the next record, io.EOF at the end, or a read error.
	next() (item, error)
	// position is the last physical line read, for the progress bar.
	position() int
}

// maxLineBytes bounds a JSON line: the webhook refuses bodies over 1 MiB, and a backfill line is
// one such body. It also bounds the line the format is detected from.
const maxLineBytes = 1 << 20

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// open detects the format from the first non-empty line and returns its source.
func open(r io.Reader, name string, now func() time.Time) (source, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	// Spreadsheet programs save CSV with a byte order mark; it would otherwise end up in the
	// first column name.
	if b, err := br.Peek(len(utf8BOM)); err == nil && bytes.Equal(b, utf8BOM) {
		_, _ = br.Discard(len(utf8BOM))
	}
	lr := &lineReader{br: br, max: maxLineBytes}
	for {
		b, tooLong, err := lr.next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: the file is empty: want a CSV header (%s) or JSON Lines of webhook bodies", name, headerHint)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: read: %w", name, err)
		}
		first := bytes.TrimSpace(b)
		if len(first) == 0 && !tooLong {
			continue
		}
		if len(first) > 0 && first[0] == '{' {
			return &jsonlSource{lr: lr, now: now, pending: &pendingLine{b: b, tooLong: tooLong, line: lr.line}}, nil
		}
		if tooLong {
			return nil, fmt.Errorf("%s:%d: the first line is longer than 1 MiB: not a CSV header", name, lr.line)
		}
		// The header goes through the CSV reader too, so that quoted column names work; the
		// blank lines skipped above shift its line numbers.
		header := append(bytes.Clone(b), '\n')
		return newCSVSource(io.MultiReader(bytes.NewReader(header), br), lr.line-1, name, now)
	}
}

// lineReader reads lines of bounded length.
type lineReader struct {
	br   *bufio.Reader
	max  int
	line int // lines read so far
}

// next gives the next line without its line ending. A line longer than max is consumed whole
// but only its first max bytes are returned, with tooLong set, so that one oversized line is
// reported and skipped instead of exhausting memory.
func (l *lineReader) next() (b []byte, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := l.br.ReadSlice('\n')
		if len(buf)+len(chunk) <= l.max+2 { // +2: the line ending does not count
			buf = append(buf, chunk...)
		} else {
			tooLong = true
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(buf) == 0 && !tooLong {
				return nil, false, io.EOF
			}
		case err != nil:
			return nil, false, err
		}
		l.line++
		return bytes.TrimRight(buf, "\r\n"), tooLong, nil
	}
}

// pendingLine is the line open read to detect the format, handed back as the first record.
type pendingLine struct {
	b       []byte
	tooLong bool
	line    int
}

// jsonlSource reads JSON Lines: one webhook body per non-empty line.
type jsonlSource struct {
	lr      *lineReader
	now     func() time.Time
	pending *pendingLine
}

func (s *jsonlSource) position() int { return s.lr.line }

func (s *jsonlSource) next() (item, error) {
	for {
		var (
			b       []byte
			tooLong bool
			line    int
		)
		if p := s.pending; p != nil {
			s.pending = nil
			b, tooLong, line = p.b, p.tooLong, p.line
		} else {
			var err error
			if b, tooLong, err = s.lr.next(); err != nil {
				return item{}, err
			}
			line = s.lr.line
		}
		if tooLong {
			return item{line: line, err: errors.New("longer than 1 MiB, the limit for a webhook body")}, nil
		}
		b = bytes.TrimSpace(b)
		if len(b) == 0 {
			continue
		}
		ev, err := edx.ParseWebhook(edx.WebhookRequest{ContentType: "application/json", Body: b, Received: s.now()})
		var unsupported *edx.UnsupportedTypeError
		switch {
		case errors.As(err, &unsupported):
			return item{line: line, unsupported: err}, nil
		case err != nil:
			// ParseWebhook's errors name the field path and never repeat an e-mail address.
			return item{line: line, err: err}, nil
		}
		return item{line: line, ev: ev}, nil
	}
}

// maxShown bounds how much of a value a problem repeats.
const maxShown = 64

// quote repeats a value in a problem: shortened, and withheld when it may be an e-mail address
// (a column shifted by one puts the address under another name).
func quote(s string) string {
	if strings.Contains(s, "@") {
		return "(value withheld: it may be an e-mail address)"
	}
	if utf8.RuneCountInString(s) > maxShown {
		s = string([]rune(s)[:maxShown]) + "…"
	}
	return strconv.Quote(s)
}

// csvSyntaxError reports whether a CSV reader error concerns one record (reported and skipped)
// rather than the input (which stops the run).
func csvSyntaxError(err error) (*csv.ParseError, bool) {
	var pe *csv.ParseError
	if !errors.As(err, &pe) {
		return nil, false
	}
	switch {
	case errors.Is(pe.Err, csv.ErrBareQuote), errors.Is(pe.Err, csv.ErrQuote),
		errors.Is(pe.Err, csv.ErrFieldCount):
		return pe, true
	}
	return nil, false
}
