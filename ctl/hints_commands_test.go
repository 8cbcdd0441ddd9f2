package ctl_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/autonomyops/orchestrator/ctl"
	"github.com/autonomyops/orchestrator/node"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The commands that hints, messages and docs tell an operator to run must
// exist as written: every `autonomyctl ...` names commands of the cobra
// tree and flags those commands take, every `autonomy-orchestrator serve
// ...` flags the daemon takes, and every systemctl or journalctl line the
// unit the packages install.

// proseAfterAutonomyctl are the words that may follow "autonomyctl" in a
// sentence about it ("autonomyctl finds the leader"), not a command line.
// Anything else after "autonomyctl " must be a command.
var proseAfterAutonomyctl = map[string]bool{
	"and": true, "at": true, "appended": true, "backs": true, "can": true, "finds": true, "follows": true,
	"has": true, "in-process": true, "is": true, "never": true, "of": true, "only": true, "operates": true,
	"prints": true, "reads": true, "uses": true, "verifies": true,
}

// unitName is the systemd unit the packages install (systemd/).
const unitName = "autonomy-orchestrator"

// checker resolves command lines against the two binaries.
type checker struct {
	root  *cobra.Command
	serve *pflag.FlagSet
}

func newChecker(t *testing.T) *checker {
	t.Helper()
	root := ctl.RootCommand()
	root.InitDefaultHelpCmd()
	root.InitDefaultHelpFlag()
	root.InitDefaultVersionFlag()
	serve := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	cfg := node.DefaultConfig()
	cfg.BindFlags(serve)
	serve.String("config", "", "") // bound by node.Main next to the Config's flags
	if _, err := os.Stat(filepath.Join("..", "systemd", unitName+".service")); err != nil {
		t.Fatalf("the unit the hints name: %v", err)
	}
	return &checker{root: root, serve: serve}
}

var (
	// A mention: the program's name; its words follow on the same line.
	mentionRE = regexp.MustCompile(`\b(autonomyctl|autonomy-orchestrator|systemctl|journalctl)\b`)
	// Placeholders of format strings, and of templates.
	verbRE = regexp.MustCompile(`%[-+# 0]*[0-9]*(\.[0-9]+)?[sdvqtx]|\{\{[^}]*\}\}`)
)

// placeholder stands for a value a format string fills in: an argument,
// or a command this test cannot see (printed hints are checked whole by
// TestHints_printedNameCommandsThatExist).
const placeholder = "\u27e8X\u27e9"

// upperWord is a placeholder in a synopsis: NAME, KEY, COMMAND.
var upperWord = regexp.MustCompile(`^[A-Z][A-Z_]*$`)

// conjunctions end a command line in a sentence ("--token or AUTONOMY_TOKEN").
var conjunctions = map[string]bool{"or": true, "and": true, "/": true, "then": true}

// words splits what follows a program name into its arguments, up to the
// end of the command: a closing quote or backtick, a ; | ) or a sentence's
// end.
func words(rest string) []string {
	var out []string
	for _, w := range strings.Fields(rest) {
		if strings.IndexAny(w[:1], "`'\"(;|&<>#") == 0 {
			break
		}
		end := false
		if i := strings.IndexAny(w, "`'\";)"); i >= 0 {
			w, end = w[:i], true
		}
		if t := strings.TrimRight(w, ".,:"); t != w && !strings.HasPrefix(w, "-") || strings.HasSuffix(w, ",") || strings.HasSuffix(w, ":") {
			w, end = t, true
		}
		if w != "" {
			out = append(out, w)
		}
		if end {
			break
		}
	}
	return out
}

// check finds every command line in text and returns what is wrong with
// each; checked counts the autonomyctl lines resolved.
func (c *checker) check(text string) (problems []string, checked int) {
	text = verbRE.ReplaceAllString(text, placeholder)
	for _, m := range mentionRE.FindAllStringIndex(text, -1) {
		prog := text[m[0]:m[1]]
		if m[0] > 0 && strings.ContainsAny(text[m[0]-1:m[0]], "-_.") {
			continue // part of another name (autonomyctl-ha-status.1, the .service)
		}
		rest := text[m[1]:]
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			rest = rest[:i]
		}
		if rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
			continue // autonomyctl's, autonomyctl/1.0, "autonomyctl"
		}
		if prog == "autonomy-orchestrator" && unitArgument(text[:m[0]]) {
			continue // the unit's name in a systemctl or journalctl line, checked there
		}
		ws := words(rest)
		if len(ws) > 0 && ws[0] == placeholder {
			continue // the program's name, then a value: "autonomyctl %s" (its version)
		}
		if len(ws) == 0 {
			continue
		}
		var err error
		switch prog {
		case "autonomyctl":
			if !strings.HasPrefix(ws[0], "-") && proseAfterAutonomyctl[ws[0]] {
				continue
			}
			err = c.ctl(ws)
			checked++
		case "autonomy-orchestrator":
			err = c.daemon(ws)
		case "systemctl", "journalctl":
			err = c.unit(prog, ws)
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("%q: %v", strings.TrimSpace(prog+" "+strings.Join(ws, " ")), err))
		}
	}
	return problems, checked
}

// unitArgument reports whether what precedes a name makes it the unit of a
// systemctl or journalctl line ("journalctl -u NAME", "systemctl status
// NAME", "systemctl --no-pager status NAME").
func unitArgument(before string) bool {
	f := strings.Fields(before)
	for i := len(f) - 1; i >= 0 && i >= len(f)-3; i-- {
		w := strings.Trim(f[i], "`'\"(")
		if w == "systemctl" || w == "journalctl" || (i == len(f)-1 && (w == "-u" || w == "--unit")) {
			return true
		}
	}
	return false
}

// ctl resolves an autonomyctl command line: subcommands, then flags (with
// their values) and arguments. "a|b" in a synopsis stands for both.
func (c *checker) ctl(ws []string) error {
	return c.walk(c.root, ws, false)
}

func (c *checker) walk(cmd *cobra.Command, ws []string, sawArg bool) error {
	for i := 0; i < len(ws); i++ {
		w := strings.Trim(ws[i], "[]{}")
		if conjunctions[w] {
			return nil
		}
		if w == "" || w == "..." {
			continue
		}
		if strings.HasPrefix(w, "-") && w != "-" {
			f, err := lookupFlag(cmd, w)
			if err != nil {
				return err
			}
			if f != nil && f.Value.Type() != "bool" && !strings.Contains(w, "=") && i+1 < len(ws) && !conjunctions[ws[i+1]] {
				i++ // its value
			}
			continue
		}
		if !sawArg && cmd.HasSubCommands() {
			if w == placeholder || upperWord.MatchString(w) {
				return nil // "autonomyctl COMMAND --help": any command; nothing more to resolve
			}
			var alts []*cobra.Command
			for _, name := range strings.Split(w, "|") {
				sub := findSub(cmd, name)
				if sub == nil {
					return fmt.Errorf("%q has no subcommand %q (it has: %s)", cmd.CommandPath(), name, subNames(cmd))
				}
				alts = append(alts, sub)
			}
			for _, sub := range alts[1:] {
				if err := c.walk(sub, ws[i+1:], false); err != nil {
					return err
				}
			}
			cmd = alts[0]
			continue
		}
		sawArg = true
	}
	return nil
}

func findSub(cmd *cobra.Command, name string) *cobra.Command {
	for _, s := range cmd.Commands() {
		if s.Name() == name || s.HasAlias(name) {
			return s
		}
	}
	return nil
}

func subNames(cmd *cobra.Command) string {
	var names []string
	for _, s := range cmd.Commands() {
		if !s.Hidden {
			names = append(names, s.Name())
		}
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// lookupFlag finds --name or -x on cmd, its own or inherited. nil, nil for
// the help flag, which cobra adds to every command when it runs.
func lookupFlag(cmd *cobra.Command, w string) (*pflag.Flag, error) {
	name, _, _ := strings.Cut(w, "=")
	var f *pflag.Flag
	if long, ok := strings.CutPrefix(name, "--"); ok {
		if long == "help" {
			return nil, nil
		}
		f = cmd.Flags().Lookup(long)
		if f == nil {
			f = cmd.InheritedFlags().Lookup(long)
		}
	} else {
		short := strings.TrimPrefix(name, "-")
		if short == "h" {
			return nil, nil
		}
		if len(short) != 1 {
			return nil, fmt.Errorf("%q: %s is not a flag (a long flag takes two dashes)", cmd.CommandPath(), name)
		}
		f = cmd.Flags().ShorthandLookup(short)
		if f == nil {
			f = cmd.InheritedFlags().ShorthandLookup(short)
		}
	}
	if f == nil {
		return nil, fmt.Errorf("%q has no flag %s", cmd.CommandPath(), name)
	}
	return f, nil
}

// daemon checks an autonomy-orchestrator command line: serve and its flags,
// or --version / --help.
func (c *checker) daemon(ws []string) error {
	switch ws[0] {
	case "serve":
	case "--version", "-v", "--help", "-h":
		return nil
	default:
		if strings.HasPrefix(ws[0], "-") {
			return fmt.Errorf("autonomy-orchestrator has no flag %s", ws[0])
		}
		return nil // prose: "the autonomy-orchestrator process", "autonomy-orchestrator service"
	}
	for i := 1; i < len(ws); i++ {
		w := ws[i]
		if !strings.HasPrefix(w, "--") {
			if strings.HasPrefix(w, "-") {
				return fmt.Errorf("autonomy-orchestrator serve: %s is not a flag (they take two dashes)", w)
			}
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(w, "--"), "=")
		if name == "help" {
			continue
		}
		f := c.serve.Lookup(name)
		if f == nil {
			return fmt.Errorf("autonomy-orchestrator serve has no flag --%s", name)
		}
		if f.Value.Type() != "bool" && !hasValue {
			i++
		}
	}
	return nil
}

// unit checks that a systemctl or journalctl line that names one of ours
// names the unit the packages install.
func (c *checker) unit(prog string, ws []string) error {
	for i, w := range ws {
		var name string
		switch {
		case prog == "journalctl" && w == "-u" && i+1 < len(ws):
			name = ws[i+1]
		case prog == "journalctl" && strings.HasPrefix(w, "--unit="):
			name = strings.TrimPrefix(w, "--unit=")
		case prog == "systemctl" && !strings.HasPrefix(w, "-") && i > 0:
			name = w
		default:
			continue
		}
		name = strings.TrimSuffix(name, ".service")
		if strings.HasPrefix(name, "autonomy") && name != unitName {
			return fmt.Errorf("%s names unit %q; the packages install %s.service", prog, name, unitName)
		}
	}
	return nil
}

// hintTable returns ctl's hint constants (hints.go): name → text.
func hintTable(t *testing.T) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "hints.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !strings.HasPrefix(n.Name, "hint") || i >= len(vs.Values) {
					continue
				}
				s, ok := constString(vs.Values[i])
				if !ok {
					t.Fatalf("hints.go: %s is not a string constant this test can read", n.Name)
				}
				out[n.Name] = s
			}
		}
	}
	return out
}

// constString evaluates a string literal or a + of them.
func constString(e ast.Expr) (string, bool) {
	switch v := e.(type) {
	case *ast.BasicLit:
		if v.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(v.Value)
		return s, err == nil
	case *ast.BinaryExpr:
		if v.Op != token.ADD {
			return "", false
		}
		a, ok1 := constString(v.X)
		b, ok2 := constString(v.Y)
		return a + b, ok1 && ok2
	case *ast.ParenExpr:
		return constString(v.X)
	}
	return "", false
}

// TestHints_nameCommandsThatExist: every hint of the table names commands
// and flags that exist.
func TestHints_nameCommandsThatExist(t *testing.T) {
	c := newChecker(t)
	table := hintTable(t)
	if len(table) < 25 {
		t.Fatalf("found %d hint constants in hints.go: the scan is broken", len(table))
	}
	checked := 0
	for name, text := range table {
		problems, n := c.check(text)
		checked += n
		for _, p := range problems {
			t.Errorf("hints.go %s: %s", name, p)
		}
	}
	if checked < 8 {
		t.Errorf("only %d autonomyctl command lines in the hints: the scan is broken", checked)
	}
	// The hint that sent root to `serve` by hand on /var/lib/autonomy (which
	// leaves root-owned files that stop the service) is gone for good.
	for name, text := range table {
		if strings.Contains(text, "autonomy-orchestrator serve") {
			t.Errorf("hints.go %s tells the operator to run the daemon by hand: %q", name, text)
		}
	}
}

// goFiles returns the non-test Go files under dir.
func goFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// stringLiterals returns the string literals of a Go file, with their
// positions, and constant concatenations joined.
func stringLiterals(t *testing.T, path string) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		switch v := n.(type) {
		case *ast.BinaryExpr:
			if s, ok := constString(v); ok {
				out[fset.Position(v.Pos()).String()] = s
				return false
			}
		case *ast.BasicLit:
			if s, ok := constString(v); ok {
				out[fset.Position(v.Pos()).String()] = s
			}
		}
		return true
	})
	return out
}

// TestHints_printedOnlyFromTheTable: a "hint: " line printed anywhere but
// printHints would escape TestHints_nameCommandsThatExist.
func TestHints_printedOnlyFromTheTable(t *testing.T) {
	for _, path := range goFiles(t, ".") {
		if filepath.Base(path) == "hints.go" {
			continue
		}
		for pos, s := range stringLiterals(t, path) {
			if strings.Contains(s, "hint:") {
				t.Errorf("%s: %q prints a hint outside hints.go; add it to the table there and print it with printHints", pos, s)
			}
		}
	}
}

// TestMessagesAndDocs_nameCommandsThatExist: every message of the binaries
// (help texts, errors, log lines and the nodes' answers the CLI prints) and
// every operator document names commands that exist.
func TestMessagesAndDocs_nameCommandsThatExist(t *testing.T) {
	c := newChecker(t)
	checked := 0
	report := func(where, text string) {
		problems, n := c.check(text)
		checked += n
		for _, p := range problems {
			t.Errorf("%s: %s", where, p)
		}
	}
	for _, dir := range []string{".", "../api", "../node", "../cluster", "../walrepl", "../settings"} {
		for _, path := range goFiles(t, dir) {
			for pos, s := range stringLiterals(t, path) {
				report(pos, s)
			}
		}
	}
	var docs []string
	for _, pattern := range []string{"../docs/*.md", "../README.md", "../packaging/monitoring/README.md",
		"../packaging/monitoring/prometheus/*.yml", "../packaging/files/*.yaml", "../systemd/*.service"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, m...)
	}
	if len(docs) < 8 {
		t.Fatalf("found only %d documents: %v", len(docs), docs)
	}
	for _, path := range docs {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// A shell line continued with a backslash is one command line.
		lines := strings.Split(string(b), "\n")
		for i := 0; i < len(lines); i++ {
			first, line := i, lines[i]
			for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
				i++
				line = strings.TrimSuffix(line, "\\") + " " + lines[i]
			}
			report(fmt.Sprintf("%s:%d", path, first+1), line)
		}
	}
	if checked < 100 {
		t.Errorf("only %d autonomyctl command lines found in the sources and docs: the scan is broken", checked)
	}
	t.Logf("%d autonomyctl command lines checked", checked)
}

// TestChecker_catchesWrongCommands: the checker itself refuses what does
// not exist, so the tests above cannot pass by checking nothing.
func TestChecker_catchesWrongCommands(t *testing.T) {
	c := newChecker(t)
	for _, tc := range []struct {
		text string
		ok   bool
	}{
		{"run `autonomyctl ha status` first", true},
		{"autonomyctl ha failover --to n2 --dry-run", true},
		{"autonomyctl -o json wal status --all", true},
		{"autonomyctl config set orchestrator.url http://HOST:8888", true},
		{"autonomyctl settings get|set|delete", true},
		{"sudo -u autonomy autonomyctl wal reset --data-dir /var/lib/autonomy; sudo systemctl start autonomy-orchestrator", true},
		{"autonomy-orchestrator serve --config /etc/autonomy/orchestrator.yaml", true},
		{"journalctl -u autonomy-orchestrator -p err", true},
		{"autonomyctl finds the leader itself", true},
		{"autonomyctl member remove NAME", true},
		{"autonomyctl COMMAND --help", true},
		{"autonomyctl ha stats", false},
		{"autonomyctl stauts", false},
		{"autonomyctl ha failover --target n2", false},
		{"autonomyctl logs --folow", false},
		{"autonomyctl settings get|put", false},
		{"autonomy-orchestrator serve --data-directory /var/lib/autonomy", false},
		{"sudo systemctl start autonomy", false},
		{"journalctl -u autonomy-orchestratord", false},
	} {
		problems, _ := c.check(tc.text)
		if ok := len(problems) == 0; ok != tc.ok {
			t.Errorf("%q: problems %v, want ok=%v", tc.text, problems, tc.ok)
		}
	}
}

// printed is what checkPrintedHints compares printed hints with.
var printed struct {
	once      sync.Once
	c         *checker
	templates []*regexp.Regexp
}

// checkPrintedHints checks every "hint: " line a command printed: it is one
// of the table's (a template with its verbs filled in), and it names
// commands that exist as filled in, with its flags (a resume command with
// --kind and --after-seq, `ha failover --dry-run --to NODE`). Every run of
// the CLI in this package's tests (testCLI.run, asyncRun.wait) passes its
// stderr here, so each scenario those tests set up checks its hints.
func checkPrintedHints(t *testing.T, stderr string) {
	t.Helper()
	printed.once.Do(func() {
		printed.c = newChecker(t)
		for _, text := range hintTable(t) {
			parts := verbRE.Split(text, -1)
			for i := range parts {
				parts[i] = regexp.QuoteMeta(parts[i])
			}
			printed.templates = append(printed.templates, regexp.MustCompile("^"+strings.Join(parts, "(?s:.*)")+"$"))
		}
	})
	for _, line := range strings.Split(stderr, "\n") {
		h, ok := strings.CutPrefix(line, "hint: ")
		if !ok {
			continue
		}
		known := false
		for _, re := range printed.templates {
			if re.MatchString(h) {
				known = true
				break
			}
		}
		if !known {
			t.Errorf("printed a hint that is not in hints.go's table: %q", h)
		}
		problems, _ := printed.c.check(h)
		for _, p := range problems {
			t.Errorf("printed hint %q: %s", h, p)
		}
	}
}
