package rules

import (
	"fmt"
	"net/url"
	"strings"
	"text/template"
	"text/template/parse"
	"unicode"
)

// Learners choose their own names and usernames, and templates put them into Markdown (the
// narrative, which the badge host renders) and into a URL (the evidence). So every value a template
// prints is escaped for where it goes, the way html/template does it: after Parse, each printing
// action gets an escaper appended to its pipeline. An operator who wants a value as it is says so
// with raw ({{raw .Name}} or {{.Name | raw}}).

// Template function names. The escapers are named so that no operator writes them by accident;
// one written explicitly is not applied twice.
const (
	rawFunc      = "raw"
	markdownFunc = "_escape_markdown"
	pathFunc     = "_escape_path"
)

// rawText is a value that raw has let through; the escapers print it unchanged.
type rawText string

var templateFuncs = template.FuncMap{
	rawFunc:      func(v any) rawText { return rawText(printed(v)) },
	markdownFunc: func(v any) string { return escaped(v, escapeMarkdown) },
	pathFunc:     func(v any) string { return escaped(v, url.PathEscape) },
}

// printed gives a value as a template would print it.
func printed(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case rawText:
		return string(t)
	}
	return fmt.Sprint(v)
}

func escaped(v any, escape func(string) string) string {
	if r, ok := v.(rawText); ok {
		return string(r)
	}
	return escape(printed(v))
}

// escapeMarkdown backslash-escapes every ASCII punctuation character, which CommonMark allows for
// all of them: none can then open a link, an autolink (GFM's too: their "www." and ":" are
// broken), inline HTML, emphasis, code, a heading or a list item. Line breaks and other control
// characters become spaces, so a value cannot start a block of its own. The rendered text reads
// the same.
func escapeMarkdown(s string) string {
	var b strings.Builder
	b.Grow(len(s) + len(s)/4)
	for _, r := range s {
		switch {
		case r < 0x80 && (unicode.IsPunct(r) || unicode.IsSymbol(r)):
			b.WriteByte('\\')
			b.WriteRune(r)
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// escapeTemplate appends escaper to every printing action of t and of the templates it defines.
// In an evidence URL (urlStart), an action that begins the output is the URL itself, typically
// {{.CertificateURL}}: it is left whole, and the rendered URL is checked as an absolute http(s)
// URL instead. A pipeline that already ends in raw, in the escaper or, in a URL, in urlquery is
// left as the operator wrote it.
func escapeTemplate(t *template.Template, escaper string, urlStart bool) {
	for _, tt := range t.Templates() {
		if tt.Tree == nil || tt.Root == nil {
			continue
		}
		leading := urlStart && tt.Name() == t.Name()
		keep := map[string]bool{rawFunc: true, escaper: true}
		if urlStart {
			keep["urlquery"] = true
		}
		escapeList(tt.Root, escaper, keep, leading)
	}
}

// escapeList rewrites the actions of list and reports whether nothing may have been printed yet.
func escapeList(list *parse.ListNode, escaper string, keep map[string]bool, leading bool) bool {
	if list == nil {
		return leading
	}
	for _, node := range list.Nodes {
		switch n := node.(type) {
		case *parse.TextNode:
			if len(n.Text) > 0 {
				leading = false
			}
		case *parse.ActionNode:
			if len(n.Pipe.Decl) > 0 {
				continue // {{$x := …}} prints nothing
			}
			if !leading && !keep[lastCommand(n.Pipe)] {
				n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{
					NodeType: parse.NodeCommand,
					Pos:      n.Pos,
					Args:     []parse.Node{parse.NewIdentifier(escaper).SetPos(n.Pos)},
				})
			}
			leading = false
		case *parse.IfNode:
			escapeBranches(&n.BranchNode, escaper, keep, leading)
			leading = false
		case *parse.WithNode:
			escapeBranches(&n.BranchNode, escaper, keep, leading)
			leading = false
		case *parse.RangeNode:
			// The body runs more than once: only its first run could begin the output.
			escapeBranches(&n.BranchNode, escaper, keep, false)
			leading = false
		case *parse.TemplateNode:
			leading = false // the called template is escaped on its own
		}
	}
	return leading
}

func escapeBranches(b *parse.BranchNode, escaper string, keep map[string]bool, leading bool) {
	escapeList(b.List, escaper, keep, leading)
	escapeList(b.ElseList, escaper, keep, leading)
}

// lastCommand names the function a pipeline ends in, "" when it ends in something else.
func lastCommand(p *parse.PipeNode) string {
	if p == nil || len(p.Cmds) == 0 {
		return ""
	}
	args := p.Cmds[len(p.Cmds)-1].Args
	if len(args) == 0 {
		return ""
	}
	if id, ok := args[0].(*parse.IdentifierNode); ok {
		return id.Ident
	}
	return ""
}
