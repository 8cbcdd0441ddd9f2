package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func gunzip(t *testing.T, p string) (string, []byte) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("%s: gzip header has name %q, time %v: not reproducible (want gzip -n)", p, zr.Name, zr.ModTime)
	}
	return string(out), b
}

// A binary without the __genman hook (autonomy-orchestrator) gets its pages
// from its help output; the build machine's hostname and cache directory do
// not leak into them.
func TestGenerateMan_fromHelp(t *testing.T) {
	testdata, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	bin := filepath.Join(t.TempDir(), "autonomy-orchestrator")
	script := "#!/bin/sh\ncase \"$*\" in\n" +
		"'--help') cat " + testdata + "/orchestrator-help.txt ;;\n" +
		"'serve --help') sed -e \"s|@XDG_CACHE_HOME@|$XDG_CACHE_HOME|\" -e 's|@HOSTNAME@|" + host + "|' " + testdata + "/orchestrator-serve-help.txt ;;\n" +
		"*) echo \"unknown command \\\"$1\\\"\" >&2; exit 2 ;;\nesac\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	date := time.Date(2026, 12, 5, 9, 33, 26, 0, time.UTC)
	pages, err := generateMan(context.Background(), bin, "1.2.3", dir, date)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "autonomy-orchestrator-serve.1.gz"), filepath.Join(dir, "autonomy-orchestrator.1.gz")}
	if strings.Join(pages, " ") != strings.Join(want, " ") {
		t.Fatalf("pages %q, want %q", pages, want)
	}
	root, _ := gunzip(t, pages[1])
	for _, s := range []string{".SH NAME", "autonomy-orchestrator - AutonomyOps HA orchestrator node", "autonomy-orchestrator-serve(1)", "AutonomyOps 1.2.3", "Dec 2026"} {
		if !strings.Contains(root, s) {
			t.Errorf("autonomy-orchestrator.1 lacks %q:\n%s", s, root)
		}
	}
	if strings.Contains(root, "completion") {
		t.Errorf("autonomy-orchestrator.1 mentions cobra's completion command:\n%s", root)
	}
	serve, _ := gunzip(t, pages[0])
	for _, s := range []string{
		"autonomy-orchestrator serve [flags]",
		`--wal-retention-bytes\fP=8589934592`,
		`--data-dir\fP="$XDG_CACHE_HOME/autonomyops/orchestrator"`,
		`--name\fP=""`,
		`--leader-ttl\fP=2s`,
		`--wal-retention-age\fP=0s`,
		"(default: hostname)",
		"(default: http://<listen>, 127.0.0.1 for 0.0.0.0)",
		"tokens: [{name, role, sha256}] (empty: auth off)",
		"autonomy-orchestrator(1)",
	} {
		if !strings.Contains(serve, s) {
			t.Errorf("autonomy-orchestrator-serve.1 lacks %q", s)
		}
	}
	if host != "" && strings.Contains(serve, `"`+host+`"`) {
		t.Errorf("autonomy-orchestrator-serve.1 shows the build machine's hostname %q as a default", host)
	}
	if t.Failed() {
		t.Logf("autonomy-orchestrator-serve.1:\n%s", serve)
	}
}

// A binary with the hook writes its own pages, dated by SOURCE_DATE_EPOCH.
func TestGenerateMan_hook(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "autonomyctl")
	script := "#!/bin/sh\n[ \"$1\" = __genman ] || exit 2\n" +
		"printf '.TH AUTONOMYCTL 1 %s\\n' \"$SOURCE_DATE_EPOCH\" >\"$2/autonomyctl.1\"\n" +
		"printf '.TH AUTONOMYCTL-HA 1\\n' >\"$2/autonomyctl-ha.1\"\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pages, err := generateMan(context.Background(), bin, "1.2.3", dir, time.Unix(1764927206, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(pages) != 2 {
		t.Fatalf("pages %q, want 2", pages)
	}
	if page, _ := gunzip(t, filepath.Join(dir, "autonomyctl.1.gz")); page != ".TH AUTONOMYCTL 1 1764927206\n" {
		t.Errorf("autonomyctl.1 = %q: SOURCE_DATE_EPOCH not passed", page)
	}
}

func TestGenerateMan_neitherHookNorHelp(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "autonomyctl")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'segfault' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := generateMan(context.Background(), bin, "1.2.3", t.TempDir(), time.Now())
	if err == nil || !strings.Contains(err.Error(), "__genman") || !strings.Contains(err.Error(), "--help") {
		t.Fatalf("err = %v, want one naming both ways", err)
	}
}

func TestParseHelp(t *testing.T) {
	text := `Manage the things.
Longer description.

Usage:
  tool things [flags]
  tool things [command]

Aliases:
  things, thing

Examples:
  tool things list
  tool things add x

Available Commands:
  add         Add a thing
  list        List the things

Flags:
  -a, --all                show all
      --colour string      when to colour:
                           always or never (default "auto")
      --file string        path <dir>/x
      --limit int          at most this many
      --tags strings       tags to match (default [a,b])
      --wait duration      how long (default 5s)

Global Flags:
  -o, --output string   output format (default "table")

Use "tool things [command] --help" for more information about a command.
`
	h, err := parseHelp(text)
	if err != nil {
		t.Fatal(err)
	}
	if h.description != "Manage the things.\nLonger description." {
		t.Errorf("description %q", h.description)
	}
	if strings.Join(h.aliases, ",") != "things,thing" || h.examples != "tool things list\ntool things add x" {
		t.Errorf("aliases %q, examples %q", h.aliases, h.examples)
	}
	if len(h.commands) != 2 || h.commands[1] != (helpCommand{"list", "List the things"}) {
		t.Errorf("commands %+v", h.commands)
	}
	type flag struct{ short, typ, def, usage string }
	want := map[string]flag{
		"all":    {"a", "bool", "false", "show all"},
		"colour": {"", "string", "auto", "when to colour:\nalways or never"},
		"file":   {"", "string", "", `path \<dir\>/x`},
		"limit":  {"", "int", "0", "at most this many"},
		"tags":   {"", "strings", "[a,b]", "tags to match"},
		"wait":   {"", "duration", "5s", "how long"},
	}
	if len(h.flags) != len(want) {
		t.Errorf("%d flags, want %d", len(h.flags), len(want))
	}
	for _, f := range h.flags {
		got := flag{f.Shorthand, f.Value.Type(), f.DefValue, f.Usage}
		if got != want[f.Name] {
			t.Errorf("--%s = %+v, want %+v", f.Name, got, want[f.Name])
		}
	}
	if len(h.global) != 1 || h.global[0].Name != "output" || h.global[0].DefValue != "table" {
		t.Errorf("global flags %+v", h.global)
	}
	c := h.command("tool", []string{"things"}, "")
	if c.Use != "things" || !c.Runnable() || c.Short != "" {
		t.Errorf("command Use %q, runnable %v, Short %q", c.Use, c.Runnable(), c.Short)
	}
	if _, err := parseHelp("no usage here\n"); err == nil {
		t.Error("parseHelp accepted text without a Usage: section")
	}
}
