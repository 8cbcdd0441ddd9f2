package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/autonomyops/orchestrator/ctl/manpage"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Man pages are generated from the cobra commands of the binaries that go
// into the package, at package time:
//
//   - a binary with the hidden hook `<bin> __genman DIR` (autonomyctl) writes
//     its pages itself with cobra/doc from its real command tree;
//   - a binary without it (autonomy-orchestrator: node/ has no such hook) gets
//     its pages from its cobra help output (`--help` of every command), parsed
//     back into a cobra command tree and written with the same cobra/doc
//     generator.
//
// The pages are gzipped (gzip -9n: no name, no timestamp) for /usr/share/man.

// manEnv is the environment the binaries run in to describe themselves: no
// home directory or cache path of the build machine may end up in a page
// (autonomy-orchestrator's --data-dir default is under $XDG_CACHE_HOME).
func manEnv(date time.Time) []string {
	return []string{
		"PATH=/usr/bin:/bin",
		"LC_ALL=C",
		"HOME=$HOME",
		"XDG_CACHE_HOME=$XDG_CACHE_HOME",
		"XDG_CONFIG_HOME=$XDG_CONFIG_HOME",
		"SOURCE_DATE_EPOCH=" + strconv.FormatInt(date.Unix(), 10),
	}
}

// generateMan writes the gzipped man pages of the binary bin (a path) into
// dir and returns their paths, sorted.
func generateMan(ctx context.Context, bin, version, dir string, date time.Time) ([]string, error) {
	name := filepath.Base(bin)
	raw, err := os.MkdirTemp("", "mkpkg-man-")
	if err != nil {
		return nil, fmt.Errorf("mkpkg: %w", err)
	}
	defer os.RemoveAll(raw)

	cmd := exec.CommandContext(ctx, bin, "__genman", raw)
	cmd.Env = manEnv(date)
	if out, err := cmd.CombinedOutput(); err != nil || !fileExists(filepath.Join(raw, name+".1")) {
		// No hook: rebuild the command tree from the help output.
		root, herr := commandFromHelp(ctx, bin, date)
		if herr != nil {
			return nil, fmt.Errorf("mkpkg: man pages of %s: `%s __genman` failed (%v: %s) and its --help could not be read: %w",
				name, name, err, strings.TrimSpace(string(out)), herr)
		}
		if err := manpage.Write(root, raw, version, date); err != nil {
			return nil, fmt.Errorf("mkpkg: man pages of %s: %w", name, err)
		}
	}

	pages, err := filepath.Glob(filepath.Join(raw, "*.1"))
	if err != nil {
		return nil, fmt.Errorf("mkpkg: %w", err)
	}
	var written []string
	for _, p := range pages {
		if !strings.HasPrefix(filepath.Base(p), name) {
			return nil, fmt.Errorf("mkpkg: %s wrote the man page %s, which is not named after it", name, filepath.Base(p))
		}
		dst := filepath.Join(dir, filepath.Base(p)+".gz")
		if err := gzipFile(p, dst); err != nil {
			return nil, err
		}
		written = append(written, dst)
	}
	if len(written) == 0 {
		return nil, fmt.Errorf("mkpkg: no man page for %s", name)
	}
	sort.Strings(written)
	return written, nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// gzipFile compresses src into dst like gzip -9n: best compression, and no
// file name or time in the header, so that builds are reproducible.
func gzipFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("mkpkg: %w", err)
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("mkpkg: %w", err)
	}
	if _, err := zw.Write(b); err != nil {
		return fmt.Errorf("mkpkg: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("mkpkg: %w", err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("mkpkg: %w", err)
	}
	return nil
}

// skippedCommands are cobra's own commands, not worth a page of a daemon.
var skippedCommands = map[string]bool{"help": true, "completion": true}

// commandFromHelp runs `bin --help` and the same for every subcommand it
// lists, and rebuilds the command tree from cobra's help text.
func commandFromHelp(ctx context.Context, bin string, date time.Time) (*cobra.Command, error) {
	hostname, _ := os.Hostname()
	c, err := helpTree(ctx, bin, nil, hostname, date)
	if err != nil {
		return nil, err
	}
	return c.Command, nil
}

func helpTree(ctx context.Context, bin string, path []string, hostname string, date time.Time) (*commandWithGlobals, error) {
	args := append(append([]string{}, path...), "--help")
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = manEnv(date)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v: %s", filepath.Base(bin), strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	h, err := parseHelp(string(out))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", filepath.Base(bin), strings.Join(args, " "), err)
	}
	c := h.command(filepath.Base(bin), path, hostname)
	globals := map[string]bool{}
	for _, sub := range h.commands {
		if skippedCommands[sub.name] {
			continue
		}
		child, err := helpTree(ctx, bin, append(append([]string{}, path...), sub.name), hostname, date)
		if err != nil {
			return nil, err
		}
		if child.Short == "" {
			child.Short = manpage.Escape(sub.short)
		}
		c.AddCommand(child.Command)
		for _, f := range child.globalFlags {
			globals[f.Name] = true
		}
	}
	// The flags children list as global are this command's persistent flags
	// (its own help lists them with its local ones).
	for _, f := range h.flags {
		if globals[f.Name] {
			c.PersistentFlags().AddFlag(f)
		} else {
			c.Flags().AddFlag(f)
		}
	}
	return c, nil
}

type helpCommand struct{ name, short string }

// help is one command's help text, parsed.
type help struct {
	description string
	usage       []string
	aliases     []string
	examples    string
	commands    []helpCommand
	flags       []*pflag.Flag
	global      []*pflag.Flag
}

// commandWithGlobals is a rebuilt command and the inherited flags its help
// listed.
type commandWithGlobals struct {
	*cobra.Command
	globalFlags []*pflag.Flag
}

var (
	sectionRe = regexp.MustCompile(`^([A-Z][A-Za-z ]*):$`)
	commandRe = regexp.MustCompile(`^  (\S+)\s{2,}(.*)$`)
	// A pflag usage line: "  -s, --name type   usage" or "      --name   usage".
	flagRe    = regexp.MustCompile(`^  (?:-(\S), |    )--([^\s\[]+)(?: (\S+))?(?:\[=[^\]]*\])?(?:\s{2,}(.*))?$`)
	defaultRe = regexp.MustCompile(`(?s)^(.*) \(default (".*"|[^"]*)\)$`)
)

// parseHelp parses the output of cobra's default help template.
func parseHelp(text string) (*help, error) {
	h := &help{}
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	i := 0
	var desc []string
	for ; i < len(lines) && lines[i] != "Usage:"; i++ {
		desc = append(desc, lines[i])
	}
	if i == len(lines) {
		return nil, fmt.Errorf("no Usage: section in the help output (not cobra's default help template?)")
	}
	h.description = strings.TrimSpace(strings.Join(desc, "\n"))

	section := ""
	var body []string
	flush := func() error {
		defer func() { body = nil }()
		switch {
		case section == "Usage":
			for _, l := range body {
				if s := strings.TrimSpace(l); s != "" {
					h.usage = append(h.usage, s)
				}
			}
		case section == "Aliases":
			for _, a := range strings.Split(strings.TrimSpace(strings.Join(body, " ")), ",") {
				if a = strings.TrimSpace(a); a != "" {
					h.aliases = append(h.aliases, a)
				}
			}
		case section == "Examples":
			var ex []string
			for _, l := range body {
				ex = append(ex, strings.TrimPrefix(l, "  "))
			}
			h.examples = strings.Trim(strings.Join(ex, "\n"), "\n")
		case section == "Flags", section == "Global Flags":
			flags, err := parseFlags(body)
			if err != nil {
				return fmt.Errorf("%s: %w", section, err)
			}
			if section == "Flags" {
				h.flags = flags
			} else {
				h.global = flags
			}
		case section == "Additional help topics":
		default:
			// "Available Commands", "Additional Commands" and command groups.
			for _, l := range body {
				if m := commandRe.FindStringSubmatch(l); m != nil {
					h.commands = append(h.commands, helpCommand{m[1], strings.TrimSpace(m[2])})
				}
			}
		}
		return nil
	}
	for ; i < len(lines); i++ {
		l := lines[i]
		if m := sectionRe.FindStringSubmatch(l); m != nil {
			if err := flush(); err != nil {
				return nil, err
			}
			section = m[1]
			continue
		}
		if strings.HasPrefix(l, "Use \"") && strings.HasSuffix(l, "for more information about a command.") {
			continue
		}
		body = append(body, l)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if len(h.usage) == 0 {
		return nil, fmt.Errorf("empty Usage: section")
	}
	return h, nil
}

// parseFlags parses pflag's FlagUsages: one line per flag, the usage text
// starting at the same column on every line, continuation lines indented to
// that column.
func parseFlags(body []string) ([]*pflag.Flag, error) {
	var flags []*pflag.Flag
	var cur *pflag.Flag
	col := 0
	for _, l := range body {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if m := flagRe.FindStringSubmatch(l); m != nil {
			cur = newHelpFlag(m[1], m[2], m[3], m[4])
			flags = append(flags, cur)
			col = len(l) - len(m[4])
			continue
		}
		if cur == nil || col == 0 || len(l) < col || strings.TrimSpace(l[:col]) != "" {
			return nil, fmt.Errorf("cannot parse the flag line %q", l)
		}
		cur.Usage += "\n" + l[col:]
	}
	for _, f := range flags {
		f.Usage, f.DefValue = splitDefault(f.Usage, f.Value.Type())
		f.Usage = manpage.Escape(f.Usage)
		_ = f.Value.Set(f.DefValue)
	}
	return flags, nil
}

func newHelpFlag(short, name, typ, usage string) *pflag.Flag {
	f := &pflag.Flag{Name: name, Shorthand: short, Usage: usage}
	if typ == "" {
		typ = "bool"
		f.NoOptDefVal = "true"
	}
	f.Value = &helpValue{typ: typ}
	return f
}

// splitDefault takes pflag's " (default X)" off a usage text and returns the
// default, or the zero value pflag leaves out.
func splitDefault(usage, typ string) (string, string) {
	if m := defaultRe.FindStringSubmatch(usage); m != nil {
		def := m[2]
		if s, err := strconv.Unquote(def); err == nil && strings.HasPrefix(def, `"`) {
			def = s
		}
		return m[1], def
	}
	switch {
	case typ == "bool":
		return usage, "false"
	case typ == "duration":
		return usage, "0s"
	case strings.HasPrefix(typ, "int"), strings.HasPrefix(typ, "uint"), strings.HasPrefix(typ, "float"), typ == "count":
		return usage, "0"
	case strings.HasSuffix(typ, "Slice"), strings.HasSuffix(typ, "Array"), strings.HasPrefix(typ, "strings"):
		return usage, "[]"
	}
	return usage, ""
}

// helpValue is a flag value that only knows its type and text.
type helpValue struct{ typ, val string }

func (v *helpValue) String() string     { return v.val }
func (v *helpValue) Set(s string) error { v.val = s; return nil }
func (v *helpValue) Type() string       { return v.typ }

// command rebuilds the cobra command this help describes. path is the
// subcommand path below the binary; hostname is the build machine's, which
// must not show as a default (autonomy-orchestrator's --name defaults to it).
func (h *help) command(bin string, path []string, hostname string) *commandWithGlobals {
	prefix := strings.Join(append([]string{bin}, path...), " ")
	use := bin
	if len(path) > 0 {
		use = path[len(path)-1]
	}
	runnable := false
	for _, u := range h.usage {
		rest := strings.TrimSpace(strings.TrimPrefix(u, prefix))
		if rest == "[command]" {
			continue
		}
		runnable = true
		if rest = strings.TrimSpace(strings.ReplaceAll(rest, "[flags]", "")); rest != "" {
			use += " " + rest
		}
		break
	}
	c := &cobra.Command{
		Use:               use,
		Long:              manpage.Escape(h.description),
		Aliases:           h.aliases,
		Example:           h.examples,
		DisableAutoGenTag: true,
	}
	if len(path) == 0 {
		c.Short = manpage.Escape(strings.SplitN(h.description, "\n", 2)[0])
	}
	if runnable {
		c.Run = func(*cobra.Command, []string) {}
	}
	for _, f := range append(h.flags, h.global...) {
		if hostname != "" && f.DefValue == hostname {
			f.DefValue = ""
			_ = f.Value.Set("")
		}
	}
	return &commandWithGlobals{Command: c, globalFlags: h.global}
}
