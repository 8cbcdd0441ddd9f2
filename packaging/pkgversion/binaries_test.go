package pkgversion

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestBinariesPrintThePackageVersion builds both binaries with the Makefile's
// own LDFLAGS line and checks that `--version` prints, for each, its name and
// exactly the version the packages get: the -X targets in the Makefile must
// name variables that the --version flags really print (a moved variable
// would silently leave "dev"), and both must print it the same way.
func TestBinariesPrintThePackageVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both binaries")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^LDFLAGS := (.*)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("no `LDFLAGS := ...` line in the Makefile")
	}
	version, err := FromDescribe("v1.2.3-rc.1-4-gabc1234-dirty", func() (int, bool) { return 0, false })
	if err != nil {
		t.Fatal(err)
	}
	ldflags := strings.ReplaceAll(string(m[1]), "$(VERSION)", version)
	if strings.Contains(ldflags, "$(") {
		t.Fatalf("LDFLAGS uses a make variable this test does not know: %s", ldflags)
	}
	bin := t.TempDir()
	for _, b := range []struct{ name, pkg string }{
		{"autonomy-orchestrator", "./node/cmd/autonomy-orchestrator"},
		{"autonomyctl", "./ctl/cmd/autonomyctl"},
	} {
		out := filepath.Join(bin, b.name)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, b.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, msg)
		}
		got, err := exec.Command(out, "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --version: %v\n%s", b.name, err, got)
		}
		if want := b.name + " " + version + "\n"; string(got) != want {
			t.Errorf("%s --version printed %q, want %q (the package version %s)", b.name, got, want, version)
		}
	}
}
