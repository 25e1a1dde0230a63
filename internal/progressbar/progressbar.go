// Package progressbar draws the one-line progress bar of long commands (backfill, reevaluate)
// on a terminal.
package progressbar

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// redrawEvery limits redraws: a terminal repainting per line would slow a large backfill down.
const redrawEvery = 100 * time.Millisecond

const barWidth = 30

// Bar draws a one-line bar, redrawn in place with a carriage return. A nil *Bar
// draws nothing, so callers need no checks.
type Bar struct {
	W     io.Writer
	Total int    // how many items in all; 0 when unknown
	Unit  string // what is counted, e.g. "lines"
	done  int
	drawn int       // width of the bar currently on screen; 0 when none is
	last  time.Time // last redraw
}

// Update records how many are done and redraws when the last redraw is old enough.
func (p *Bar) Update(done int) {
	if p == nil {
		return
	}
	p.done = done
	if now := time.Now(); now.Sub(p.last) >= redrawEvery {
		p.last = now
		p.Draw()
	}
}

// Finish draws the final state and ends the line. done < 0 means all of Total.
func (p *Bar) Finish(done int) {
	if p == nil {
		return
	}
	switch {
	case done < 0 && p.Total > 0:
		p.done = p.Total
	case done >= 0:
		p.done = done
	}
	p.Draw()
	_, _ = io.WriteString(p.W, "\n")
	p.drawn = 0
}

// Clear wipes the bar, if one is on screen, and reports whether one was.
func (p *Bar) Clear() bool {
	if p == nil || p.drawn == 0 {
		return false
	}
	_, _ = io.WriteString(p.W, "\r"+strings.Repeat(" ", p.drawn)+"\r")
	p.drawn = 0
	return true
}

// Draw writes the bar now, whatever the time since the last redraw.
func (p *Bar) Draw() {
	if p == nil {
		return
	}
	var s string
	if p.Total > 0 {
		filled := min(barWidth*p.done/p.Total, barWidth)
		s = fmt.Sprintf("[%s%s] %d/%d %s", strings.Repeat("#", filled), strings.Repeat(" ", barWidth-filled), p.done, p.Total, p.Unit)
	} else {
		s = fmt.Sprintf("%d %s", p.done, p.Unit)
	}
	// Pad over a longer previous bar so no stale characters remain.
	pad := max(p.drawn-len(s), 0)
	_, _ = io.WriteString(p.W, "\r"+s+strings.Repeat(" ", pad))
	p.drawn = len(s) + pad
}
