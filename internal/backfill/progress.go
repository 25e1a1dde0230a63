package backfill

import (
	"bytes"
	"io"
	"os"
)

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
