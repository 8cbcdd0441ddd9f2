package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/files"
)

// stubBinaries writes shell-script stand-ins for the two binaries.
func stubBinaries(t *testing.T, completion string) string {
	t.Helper()
	dir := t.TempDir()
	ctl := "#!/bin/sh\nif [ \"$1\" = completion ]; then printf '%s\\n' '" + completion + "'; exit 0; fi\necho autonomyctl test\n"
	for name, body := range map[string]string{
		"autonomy-orchestrator": "#!/bin/sh\necho autonomy-orchestrator test\n",
		"autonomyctl":           ctl,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func testBuild(binDir string) build {
	return build{src: filepath.Join("..", "..", ".."), binDir: binDir, arch: "amd64", version: "1.2.3+4.gabc1234"}
}

func TestWriteAll_buildsDebAndRPM(t *testing.T) {
	b := testBuild(stubBinaries(t, "complete -F __start_autonomyctl autonomyctl"))
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
		filepath.Join(out, "autonomy-orchestrator_1.2.3+4.gabc1234-1_amd64.deb"),
		filepath.Join(out, "autonomy-orchestrator-1.2.3+4.gabc1234-1.x86_64.rpm"),
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
}

func TestInfo_contents(t *testing.T) {
	b := testBuild(stubBinaries(t, "x"))
	completion := filepath.Join(t.TempDir(), "autonomyctl.bash")
	if err := os.WriteFile(completion, []byte("complete autonomyctl\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	type want struct {
		typ          string
		mode         os.FileMode
		owner, group string
	}
	wants := map[string]want{
		"/usr/bin/autonomy-orchestrator":                        {files.TypeFile, 0o755, "root", "root"},
		"/usr/bin/autonomyctl":                                  {files.TypeFile, 0o755, "root", "root"},
		"/usr/lib/systemd/system/autonomy-orchestrator.service": {files.TypeFile, 0o644, "root", "root"},
		"/etc/autonomy/orchestrator.yaml":                       {files.TypeConfigNoReplace, 0o640, "root", "autonomy"},
		"/etc/autonomy/tokens.yaml":                             {files.TypeConfigNoReplace, 0o640, "root", "autonomy"},
		"/usr/share/bash-completion/completions/autonomyctl":    {files.TypeFile, 0o644, "root", "root"},
		"/usr/share/doc/autonomy-orchestrator/copyright":        {files.TypeFile, 0o644, "root", "root"},
		"/usr/share/doc/autonomy-orchestrator/install.md":       {files.TypeFile, 0o644, "root", "root"},
	}
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			info := nfpm.WithDefaults(b.info(format, completion))
			if err := nfpm.PrepareForPackager(info, format); err != nil {
				t.Fatal(err)
			}
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
