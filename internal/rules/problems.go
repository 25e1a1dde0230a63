package rules

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong with a mapping file.
type Problem struct {
	Line    int // 1-based line in the file; 0 when the problem has no single place
	Message string
}

func (p Problem) String() string {
	if p.Line <= 0 {
		return p.Message
	}
	return fmt.Sprintf("line %d: %s", p.Line, p.Message)
}

// ValidationError lists every problem found in a mapping file, so that an operator can fix them
// all in one go instead of one per restart.
type ValidationError struct {
	File     string    // set by Load; prefixes every line of Error
	Problems []Problem // sorted by line
}

// Error gives one "line N: message" line per problem.
func (e *ValidationError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if e.File != "" {
			b.WriteString(e.File)
			b.WriteString(": ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// sortProblems orders problems by line, keeping the discovery order within one line (it follows
// the file, so it reads naturally).
func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
}
