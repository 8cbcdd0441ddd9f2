package main

import (
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/files"
)

// stubBinaries writes shell-script stand-ins for the two binaries: autonomyctl
// prints completion (a script containing completion, with the shell's name)
// and writes man pages with __genman; autonomy-orchestrator has no hook, and
// a cobra-like --help.
func stubBinaries(t *testing.T, completion string) string {
	t.Helper()
	dir := t.TempDir()
	ctl := "#!/bin/sh\ncase \"$1\" in\n" +
		"completion) printf '%s # %s\\n' '" + completion + "' \"$2\"; exit 0 ;;\n" +
		"__genman) printf '.TH AUTONOMYCTL 1\\n' >\"$2/autonomyctl.1\"; printf '.TH AUTONOMYCTL-HA 1\\n' >\"$2/autonomyctl-ha.1\"; exit 0 ;;\n" +
		"esac\necho autonomyctl test\n"
	orch := "#!/bin/sh\n[ \"$1\" = --help ] || { echo 'unknown command' >&2; exit 2; }\n" +
		"printf 'AutonomyOps HA orchestrator node\\n\\nUsage:\\n  autonomy-orchestrator [flags]\\n\\nFlags:\\n  -h, --help   help for autonomy-orchestrator\\n'\n"
	for name, body := range map[string]string{
		"autonomy-orchestrator": orch,
		"autonomyctl":           ctl,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func testBuild(binDir string) build {
	return build{src: filepath.Join("..", "..", ".."), binDir: binDir, arch: "amd64", version: "1.2.3+git4.gabc1234",
		date: time.Date(2026, 12, 5, 9, 33, 26, 0, time.UTC)}
}

func TestWriteAll_buildsDebAndRPM(t *testing.T) {
	b := testBuild(stubBinaries(t, "complete -F __start_autonomyctl autonomyctl"))
	b.version = "0.2.0+git4.gabc1234"
	out := t.TempDir()
	stale := filepath.Join(out, "autonomy-orchestrator_0.0.1-1_amd64.deb")
	if err := os.WriteFile(stale, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	written, err := b.writeAll(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		filepath.Join(out, "autonomy-orchestrator_0.2.0+git4.gabc1234-1_amd64.deb"),
		filepath.Join(out, "autonomy-orchestrator-0.2.0+git4.gabc1234-1.x86_64.rpm"),
	}
	if strings.Join(written, " ") != strings.Join(want, " ") {
		t.Fatalf("wrote %q, want %q", written, want)
	}
	for _, p := range want {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Fatalf("%s: %v (empty or missing)", p, err)
		}
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale package %s was not removed: %v", stale, err)
	}

	// What the package tools see, where they are installed.
	if dpkgDeb, err := exec.LookPath("dpkg-deb"); err == nil {
		out, err := exec.Command(dpkgDeb, "-c", want[0]).CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg-deb -c: %v\n%s", err, out)
		}
		for _, f := range []string{
			"./usr/share/doc/autonomy-orchestrator/changelog.Debian.gz",
			"./usr/share/man/man1/autonomyctl.1.gz",
			"./usr/share/man/man1/autonomyctl-ha.1.gz",
			"./usr/share/man/man1/autonomy-orchestrator.1.gz",
			"./usr/share/zsh/vendor-completions/_autonomyctl",
			"./usr/share/lintian/overrides/autonomy-orchestrator",
			"./usr/share/autonomy/monitoring/prometheus/autonomy-alerts.yml",
		} {
			if !strings.Contains(string(out), " "+f+"\n") {
				t.Errorf("the deb lacks %s", f)
			}
		}
	} else {
		t.Log("dpkg-deb not installed: the deb's contents are not checked")
	}
	if rpm, err := exec.LookPath("rpm"); err == nil {
		out, err := exec.Command(rpm, "-qp", "--changelog", want[1]).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "- 0.2.0+git4.gabc1234-1\n- Development snapshot") ||
			!strings.Contains(string(out), "- 0.2.0-1\n") {
			t.Errorf("rpm --changelog: %v\n%s", err, out)
		}
		out, err = exec.Command(rpm, "-qpd", want[1]).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "/usr/share/doc/autonomy-orchestrator/install.md") {
			t.Errorf("rpm -qpd (%%doc files): %v\n%s", err, out)
		}
	} else {
		t.Log("rpm not installed: the rpm's changelog and doc files are not checked")
	}
}

// fakeGenerated stands in for what writeAll generates from the binaries.
func fakeGenerated(t *testing.T) generated {
	t.Helper()
	dir := t.TempDir()
	g := generated{completions: map[string]string{}}
	for _, shell := range shells {
		p := filepath.Join(dir, "autonomyctl."+shell)
		if err := os.WriteFile(p, []byte("complete autonomyctl\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		g.completions[shell] = p
	}
	for _, page := range []string{"autonomyctl.1.gz", "autonomy-orchestrator.1.gz"} {
		p := filepath.Join(dir, page)
		if err := os.WriteFile(p, []byte("gz"), 0o644); err != nil {
			t.Fatal(err)
		}
		g.manPages = append(g.manPages, p)
	}
	g.changelog = filepath.Join(dir, "changelog.yml")
	b := testBuild("")
	b.version = "0.2.0"
	if err := b.writeChangelog(filepath.Join("..", "..", "changelog.yml"), g.changelog, time.Now()); err != nil {
		t.Fatal(err)
	}
	return g
}

func TestInfo_contents(t *testing.T) {
	b := testBuild(stubBinaries(t, "x"))
	b.version = "0.2.0"
	g := fakeGenerated(t)
	type want struct {
		typ          string
		mode         os.FileMode
		owner, group string
	}
	wants := map[string]want{
		"/usr/bin/autonomy-orchestrator":                                     {files.TypeFile, 0o755, "root", "root"},
		"/usr/bin/autonomyctl":                                               {files.TypeFile, 0o755, "root", "root"},
		"/usr/lib/systemd/system/autonomy-orchestrator.service":              {files.TypeFile, 0o644, "root", "root"},
		"/etc/autonomy/orchestrator.yaml":                                    {files.TypeConfigNoReplace, 0o640, "root", "autonomy"},
		"/etc/autonomy/tokens.yaml":                                          {files.TypeConfigNoReplace, 0o640, "root", "autonomy"},
		"/usr/share/bash-completion/completions/autonomyctl":                 {files.TypeFile, 0o644, "root", "root"},
		"/usr/share/fish/vendor_completions.d/autonomyctl.fish":              {files.TypeFile, 0o644, "root", "root"},
		"/usr/share/man/man1/autonomyctl.1.gz":                               {files.TypeFile, 0o644, "root", "root"},
		"/usr/share/man/man1/autonomy-orchestrator.1.gz":                     {files.TypeFile, 0o644, "root", "root"},
		"/usr/share/autonomy/monitoring/prometheus/autonomy-alerts.yml":      {files.TypeFile, 0o644, "root", "root"},
		"/usr/share/autonomy/monitoring/prometheus/autonomy-alerts.test.yml": {files.TypeFile, 0o644, "root", "root"},
		"/usr/share/autonomy/monitoring/grafana/autonomy-cluster.json":       {files.TypeFile, 0o644, "root", "root"},
		"/usr/share/autonomy/monitoring/README.md":                           {files.TypeFile, 0o644, "root", "root"},
	}
	// Per format: zsh's vendor directory, %doc and %license, the lintian
	// overrides (deb only). The changelog is added by the packagers
	// (TestWriteAll_buildsDebAndRPM).
	perFormat := map[string]map[string]want{
		"deb": {
			"/usr/share/zsh/vendor-completions/_autonomyctl":      {files.TypeFile, 0o644, "root", "root"},
			"/usr/share/doc/autonomy-orchestrator/copyright":      {files.TypeFile, 0o644, "root", "root"},
			"/usr/share/doc/autonomy-orchestrator/install.md":     {files.TypeFile, 0o644, "root", "root"},
			"/usr/share/doc/autonomy-orchestrator/operations.md":  {files.TypeFile, 0o644, "root", "root"},
			"/usr/share/doc/autonomy-orchestrator/autonomyctl.md": {files.TypeFile, 0o644, "root", "root"},
			"/usr/share/doc/autonomy-orchestrator/README.md":      {files.TypeFile, 0o644, "root", "root"},
			"/usr/share/lintian/overrides/autonomy-orchestrator":  {files.TypeFile, 0o644, "root", "root"},
		},
		"rpm": {
			"/usr/share/zsh/site-functions/_autonomyctl":          {files.TypeFile, 0o644, "root", "root"},
			"/usr/share/doc/autonomy-orchestrator/copyright":      {files.TypeRPMLicense, 0o644, "root", "root"},
			"/usr/share/doc/autonomy-orchestrator/install.md":     {files.TypeRPMDoc, 0o644, "root", "root"},
			"/usr/share/doc/autonomy-orchestrator/operations.md":  {files.TypeRPMDoc, 0o644, "root", "root"},
			"/usr/share/doc/autonomy-orchestrator/autonomyctl.md": {files.TypeRPMDoc, 0o644, "root", "root"},
			"/usr/share/doc/autonomy-orchestrator/README.md":      {files.TypeRPMDoc, 0o644, "root", "root"},
		},
	}
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			info, err := b.info(format, g)
			if err != nil {
				t.Fatal(err)
			}
			info = nfpm.WithDefaults(info)
			if err := nfpm.PrepareForPackager(info, format); err != nil {
				t.Fatal(err)
			}
			if info.Changelog == "" {
				t.Error("no changelog")
			}
			wants := maps.Clone(wants)
			maps.Copy(wants, perFormat[format])
			got := map[string]*files.Content{}
			for _, c := range info.Contents {
				got[c.Destination] = c
			}
			for dst, w := range wants {
				c, ok := got[dst]
				if !ok {
					t.Errorf("%s: missing", dst)
					continue
				}
				if c.Type != w.typ || c.FileInfo.Mode.Perm() != w.mode || c.FileInfo.Owner != w.owner || c.FileInfo.Group != w.group {
					t.Errorf("%s: type %q mode %o %s:%s, want type %q mode %o %s:%s", dst,
						c.Type, c.FileInfo.Mode.Perm(), c.FileInfo.Owner, c.FileInfo.Group, w.typ, w.mode, w.owner, w.group)
				}
			}
			// The data directory must not be owned by the package: dpkg and rpm
			// delete an owned, empty directory on removal.
			for dst := range got {
				if strings.HasPrefix(dst, "/var/lib/autonomy") {
					t.Errorf("%s is in the %s package", dst, format)
				}
			}
			for _, s := range []string{info.Scripts.PreInstall, info.Scripts.PostInstall, info.Scripts.PreRemove, info.Scripts.PostRemove} {
				if _, err := os.Stat(s); err != nil {
					t.Errorf("maintainer script: %v", err)
				}
			}
		})
	}
}

func TestWriteAll_completionFailureIsClear(t *testing.T) {
	dir := stubBinaries(t, "x")
	if err := os.WriteFile(filepath.Join(dir, "autonomyctl"), []byte("#!/bin/sh\necho 'unknown command' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := testBuild(dir).writeAll(context.Background(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "completion bash") || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("err = %v, want a message naming `completion bash` and the tool's stderr", err)
	}
}

func TestWriteAll_missingBinary(t *testing.T) {
	_, err := testBuild(t.TempDir()).writeAll(context.Background(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("err = %v, want a hint to run make build", err)
	}
}
