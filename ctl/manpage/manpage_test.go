package manpage

import (
	"testing"

	"github.com/spf13/cobra"
)

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"http://<listen>":          `http://\<listen\>`,
		"[x] (y)":                  `\[x\] (y)`,
		"a `<code>` b <c>":         "a `<code>` b \\<c\\>",
		`back\slash`:               `back\\slash`,
		"plain text, nothing else": "plain text, nothing else",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestEscapeTree: a flag inherited by a subcommand is escaped once.
func TestEscapeTree(t *testing.T) {
	root := &cobra.Command{Use: "r", Short: "<a>", Long: "[b]"}
	root.PersistentFlags().String("f", "", "<f>")
	sub := &cobra.Command{Use: "s", Short: "<s>", Run: func(*cobra.Command, []string) {}}
	root.AddCommand(sub)
	EscapeTree(root)
	if root.Short != `\<a\>` || root.Long != `\[b\]` || sub.Short != `\<s\>` {
		t.Fatalf("texts: %q %q %q", root.Short, root.Long, sub.Short)
	}
	if u := root.PersistentFlags().Lookup("f").Usage; u != `\<f\>` {
		t.Fatalf("flag usage %q, want it escaped exactly once", u)
	}
}
