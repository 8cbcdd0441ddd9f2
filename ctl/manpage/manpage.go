// Package manpage writes the man pages of a cobra command tree, the one way
// both binaries' pages are made: autonomyctl's hidden `__genman` hook
// writes its own, and mkpkg writes autonomy-orchestrator's from a tree
// rebuilt from its --help output.
//
// cobra/doc renders every text as markdown (go-md2man), where
// "http://<listen>" would lose "<listen>" as an HTML tag and "[x] (y)" would
// become a link, so texts are escaped first (Escape). Text in backticks is
// code and stays as it is.
package manpage

import (
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"
)

// Escape backslash-escapes the characters markdown reads as HTML or link
// syntax, outside backtick code spans.
func Escape(s string) string {
	var b strings.Builder
	code := false
	for _, r := range s {
		if r == '`' {
			code = !code
		}
		if !code && strings.ContainsRune(`\<>[]`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// EscapeTree escapes, in place, the texts of c and its subcommands: Short,
// Long and every flag's usage. A flag shared by inheritance is escaped once.
// For a tree that is written and then thrown away (the process exits).
func EscapeTree(c *cobra.Command) {
	escapeTree(c, map[*pflag.Flag]bool{})
}

func escapeTree(c *cobra.Command, seen map[*pflag.Flag]bool) {
	c.Short = Escape(c.Short)
	c.Long = Escape(c.Long)
	escapeFlag := func(f *pflag.Flag) {
		if !seen[f] {
			seen[f] = true
			f.Usage = Escape(f.Usage)
		}
	}
	c.Flags().VisitAll(escapeFlag)
	c.PersistentFlags().VisitAll(escapeFlag)
	for _, sub := range c.Commands() {
		escapeTree(sub, seen)
	}
}

// Write writes one section-1 page per command of root (root.1,
// root-sub.1, ...) into dir, dated date (SOURCE_DATE_EPOCH for reproducible
// builds), with the source "AutonomyOps <version>".
func Write(root *cobra.Command, dir, version string, date time.Time) error {
	header := &doc.GenManHeader{Section: "1", Date: &date, Source: "AutonomyOps " + version, Manual: "AutonomyOps Manual"}
	return doc.GenManTree(root, header, dir)
}
