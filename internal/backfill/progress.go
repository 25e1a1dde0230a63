package backfill

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// redrawEvery limits redraws: a terminal repainting per line would slow a large backfill down.
const redrawEvery = 100 * time.Millisecond

const barWidth = 30

// progress draws a one-line bar, redrawn in place with a carriage return. A nil *progress
// draws nothing, so callers need no checks.
type progress struct {
	w     io.Writer
	total int // physical lines in the file; 0 when unknown
	done  int
	drawn int       // width of the bar currently on screen; 0 when none is
	last  time.Time // last redraw
}

// update records the current line and redraws when the last redraw is old enough.
func (p *progress) update(line int) {
	if p == nil {
		return
	}
	p.done = line
	if now := time.Now(); now.Sub(p.last) >= redrawEvery {
		p.last = now
		p.draw()
	}
}

// finish draws the final state and ends the line. line < 0 means the whole file was read.
func (p *progress) finish(line int) {
	if p == nil {
		return
	}
	switch {
	case line < 0 && p.total > 0:
		p.done = p.total
	case line >= 0:
		p.done = line
	}
	p.draw()
	_, _ = io.WriteString(p.w, "\n")
	p.drawn = 0
}

// clear wipes the bar, if one is on screen, and reports whether one was.
func (p *progress) clear() bool {
	if p == nil || p.drawn == 0 {
		return false
	}
	_, _ = io.WriteString(p.w, "\r"+strings.Repeat(" ", p.drawn)+"\r")
	p.drawn = 0
	return true
}

// draw writes the bar now, whatever the time since the last redraw.
func (p *progress) draw() {
	if p == nil {
		return
	}
	var s string
	if p.total > 0 {
		filled := min(barWidth*p.done/p.total, barWidth)
		s = fmt.Sprintf("[%s%s] %d/%d lines", strings.Repeat("#", filled), strings.Repeat(" ", barWidth-filled), p.done, p.total)
	} else {
		s = fmt.Sprintf("%d lines", p.done)
	}
	// Pad over a longer previous bar so no stale characters remain.
	pad := max(p.drawn-len(s), 0)
	_, _ = io.WriteString(p.w, "\r"+s+strings.Repeat(" ", pad))
	p.drawn = len(s) + pad
}

// countLines counts the lines of r when it is a regular file that can be rewound, and leaves
// it where it was; otherwise (a pipe, a terminal) it returns 0 and reads nothing. An error means
// the file could not be rewound after counting.
func countLines(r io.Reader) (int, error) {
	f, ok := r.(*os.File)
	if !ok {
		return 0, nil
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return 0, nil
	}
	start, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, nil
	}
	n, last, size := 0, byte('\n'), 0
	buf := make([]byte, 64<<10)
	for {
		k, err := f.Read(buf)
		if k > 0 {
			n += bytes.Count(buf[:k], []byte{'\n'})
			last = buf[k-1]
			size += k
		}
		if err != nil {
			break // EOF, or a read error that reading the file for real will report
		}
	}
	if size > 0 && last != '\n' {
		n++ // a last line without a line ending
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return 0, err
	}
	return n, nil
}
