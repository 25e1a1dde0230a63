package progressbar

import (
	"bytes"
	"strings"
	"testing"
)

func TestBarClearsBeforeReport(t *testing.T) {
	var w bytes.Buffer
	p := &Bar{W: &w, Total: 10, Unit: "lines"}
	p.Update(3) // the first update draws
	p.Update(4) // too soon to redraw
	if !p.Clear() || p.Clear() {
		t.Error("clear must report a bar on screen once")
	}
	p.Draw()
	p.Finish(-1)
	want := "\r[#########                     ] 3/10 lines" +
		"\r" + strings.Repeat(" ", 43) + "\r" +
		"\r[############                  ] 4/10 lines" +
		"\r[##############################] 10/10 lines\n"
	if got := w.String(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
