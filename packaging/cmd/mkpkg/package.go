package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the "deb" packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the "rpm" packager
)

// Package metadata.
const (
	pkgName     = "autonomy-orchestrator"
	maintainer  = "AutonomyOps <support@autonomyops.example>"
	vendor      = "AutonomyOps"
	homepage    = "https://github.com/autonomyops/orchestrator"
	license     = "Proprietary"
	summary     = "AutonomyOps HA orchestrator: replicated telemetry appliance"
	description = summary + "\n" +
		"One node of a three-node, highly available telemetry appliance: an\n" +
		"embedded etcd member for leadership, memberlist gossip for health, and a\n" +
		"quorum-replicated, fsynced telemetry WAL behind a REST API. Includes\n" +
		"autonomyctl, the operator CLI. The systemd unit is installed but neither\n" +
		"enabled nor started."
)

// pkgRelease is the package release (the Debian revision, the rpm Release).
const pkgRelease = "1"

// Installed paths.
const (
	unitDst       = "/usr/lib/systemd/system/autonomy-orchestrator.service"
	configDst     = "/etc/autonomy/orchestrator.yaml"
	tokensDst     = "/etc/autonomy/tokens.yaml"
	docDir        = "/usr/share/doc/autonomy-orchestrator"
	manDir        = "/usr/share/man/man1"
	monitoringDir = "/usr/share/autonomy/monitoring"
	overridesDst  = "/usr/share/lintian/overrides/" + pkgName
)

// completionDst is where each shell's completion of autonomyctl goes, per
// package format: zsh's vendor directory differs between Debian and Fedora.
var completionDst = map[string]map[string]string{
	"bash": {"deb": "/usr/share/bash-completion/completions/autonomyctl", "rpm": "/usr/share/bash-completion/completions/autonomyctl"},
	"zsh":  {"deb": "/usr/share/zsh/vendor-completions/_autonomyctl", "rpm": "/usr/share/zsh/site-functions/_autonomyctl"},
	"fish": {"deb": "/usr/share/fish/vendor_completions.d/autonomyctl.fish", "rpm": "/usr/share/fish/vendor_completions.d/autonomyctl.fish"},
}

// shells are the completions generated, in order.
var shells = []string{"bash", "zsh", "fish"}

// docs are installed in docDir (rpm: %doc), from the repository root. An
// optional one is skipped when it does not exist.
var docs = []struct {
	src      string
	optional bool
}{
	{"README.md", false},
	{"docs/install.md", false},
	{"docs/operations.md", false},
	{"docs/autonomyctl.md", false},
	{"docs/metrics.md", true}, // the metrics reference (issue 13)
	{"docs/wal-format.md", false},
}

// monitoringFiles are the monitoring pack (packaging/monitoring/), installed
// in monitoringDir.
var monitoringFiles = []string{
	"README.md",
	"prometheus/autonomy-alerts.yml",
	"prometheus/autonomy-alerts.test.yml",
	"grafana/autonomy-cluster.json",
}

// formats are the packagers mkpkg runs, in order.
var formats = []string{"deb", "rpm"}

// build describes one packaging run.
type build struct {
	src     string    // repository root
	binDir  string    // holds autonomy-orchestrator and autonomyctl
	arch    string    // Go architecture name
	version string    // already converted by pkgversion.FromDescribe
	date    time.Time // of the source (SOURCE_DATE_EPOCH or the commit): man pages, changelog, file times
}

// generated are the files made at package time from the binaries and the
// repository, shared by both formats.
type generated struct {
	completions map[string]string // shell -> file
	manPages    []string          // gzipped pages
	changelog   string            // chglog YAML for nfpm
}

// writeAll writes one package per format into out and returns their paths.
// Packages of an earlier version left in out are removed first, so that
// `dpkg -i dist/*.deb` installs exactly one.
func (b build) writeAll(ctx context.Context, out string) ([]string, error) {
	for _, bin := range []string{"autonomy-orchestrator", "autonomyctl"} {
		if err := checkExecutable(filepath.Join(b.binDir, bin)); err != nil {
			return nil, err
		}
	}
	tmp, err := os.MkdirTemp("", "mkpkg-")
	if err != nil {
		return nil, fmt.Errorf("mkpkg: %w", err)
	}
	defer os.RemoveAll(tmp)
	g, err := b.generate(ctx, tmp)
	if err != nil {
		return nil, err
	}

	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("mkpkg: %w", err)
	}
	if err := removeStale(out); err != nil {
		return nil, err
	}
	var written []string
	for _, format := range formats {
		p, err := b.write(format, g, out)
		if err != nil {
			return written, err
		}
		written = append(written, p)
	}
	return written, nil
}

// generate makes the completions, man pages and changelog in dir.
func (b build) generate(ctx context.Context, dir string) (generated, error) {
	g := generated{completions: map[string]string{}}
	for _, shell := range shells {
		p := filepath.Join(dir, "autonomyctl."+shell)
		if err := b.generateCompletion(ctx, shell, p); err != nil {
			return g, err
		}
		g.completions[shell] = p
	}
	man := filepath.Join(dir, "man")
	if err := os.Mkdir(man, 0o755); err != nil {
		return g, fmt.Errorf("mkpkg: %w", err)
	}
	for _, bin := range []string{"autonomy-orchestrator", "autonomyctl"} {
		pages, err := generateMan(ctx, filepath.Join(b.binDir, bin), b.version, man, b.date)
		if err != nil {
			return g, err
		}
		g.manPages = append(g.manPages, pages...)
	}
	g.changelog = filepath.Join(dir, "changelog.yml")
	if err := b.writeChangelog(filepath.Join(b.src, "packaging", "changelog.yml"), g.changelog, b.date); err != nil {
		return g, err
	}
	return g, nil
}

// write builds the package of one format into dir.
func (b build) write(format string, g generated, dir string) (string, error) {
	packager, err := nfpm.Get(format)
	if err != nil {
		return "", fmt.Errorf("mkpkg: %w", err)
	}
	info, err := b.info(format, g)
	if err != nil {
		return "", err
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return "", fmt.Errorf("mkpkg: %s: %w", format, err)
	}
	target := filepath.Join(dir, packager.ConventionalFileName(info))
	f, err := os.Create(target)
	if err != nil {
		return "", fmt.Errorf("mkpkg: %w", err)
	}
	info.Target = target
	if err := packager.Package(info, f); err != nil {
		f.Close()
		os.Remove(target)
		return "", fmt.Errorf("mkpkg: %s: %w", format, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(target)
		return "", fmt.Errorf("mkpkg: %w", err)
	}
	return target, nil
}

// info declares the package for one format. A fresh Info per format, since
// packaging rewrites info.Contents.
func (b build) info(format string, g generated) (*nfpm.Info, error) {
	src := func(p string) string { return filepath.Join(b.src, filepath.FromSlash(p)) }
	rootAutonomy := func(mode os.FileMode) *files.ContentFileInfo {
		return &files.ContentFileInfo{Owner: "root", Group: "autonomy", Mode: mode}
	}
	root := func(mode os.FileMode) *files.ContentFileInfo {
		return &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode}
	}
	// Documentation: %doc and %license in the rpm, plain files in the deb.
	docType, licenseType := "", ""
	if format == "rpm" {
		docType, licenseType = files.TypeRPMDoc, files.TypeRPMLicense
	}

	contents := files.Contents{
		{Source: filepath.Join(b.binDir, "autonomy-orchestrator"), Destination: "/usr/bin/autonomy-orchestrator", FileInfo: root(0o755)},
		{Source: filepath.Join(b.binDir, "autonomyctl"), Destination: "/usr/bin/autonomyctl", FileInfo: root(0o755)},
		// The unit is not a conffile: upgrades replace it; operators override it
		// with `systemctl edit` drop-ins in /etc.
		{Source: src("systemd/autonomy-orchestrator.service"), Destination: unitDst, FileInfo: root(0o644)},
		{Destination: "/etc/autonomy", Type: files.TypeDir, FileInfo: root(0o755)},
		// Conffiles, kept on upgrade and remove, deleted on purge (deb). Both are
		// readable by the autonomy group only: the config can hold --gossip-key
		// and the tokens file the token digests.
		{Source: src("packaging/files/orchestrator.yaml"), Destination: configDst, Type: files.TypeConfigNoReplace, FileInfo: rootAutonomy(0o640)},
		{Source: src("packaging/files/tokens.yaml"), Destination: tokensDst, Type: files.TypeConfigNoReplace, FileInfo: rootAutonomy(0o640)},
		{Source: src("packaging/files/copyright"), Destination: docDir + "/copyright", Type: licenseType, FileInfo: root(0o644)},
		// /var/lib/autonomy is deliberately not in the package: dpkg and rpm
		// delete a directory they own when it is empty on removal, and the data
		// directory must outlive the package. The install scripts create it
		// (0700 autonomy:autonomy) and nothing ever deletes it.
	}
	for _, shell := range shells {
		contents = append(contents, &files.Content{Source: g.completions[shell], Destination: completionDst[shell][format], FileInfo: root(0o644)})
	}
	for _, p := range g.manPages {
		contents = append(contents, &files.Content{Source: p, Destination: manDir + "/" + filepath.Base(p), FileInfo: root(0o644)})
	}
	for _, d := range docs {
		if _, err := os.Stat(src(d.src)); err != nil {
			if d.optional && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("mkpkg: documentation: %w", err)
		}
		contents = append(contents, &files.Content{Source: src(d.src), Destination: docDir + "/" + filepath.Base(d.src), Type: docType, FileInfo: root(0o644)})
	}
	for _, m := range monitoringFiles {
		contents = append(contents, &files.Content{Source: src("packaging/monitoring/" + m), Destination: monitoringDir + "/" + m, FileInfo: root(0o644)})
	}
	if format == "deb" {
		contents = append(contents, &files.Content{Source: src("packaging/files/lintian-overrides"), Destination: overridesDst, FileInfo: root(0o644)})
	}

	scripts := func(name string) string { return src("packaging/scripts/" + format + "/" + name) }
	info := &nfpm.Info{
		Name:          pkgName,
		Arch:          b.arch,
		Platform:      "linux",
		Version:       b.version,
		VersionSchema: "none", // already converted by pkgversion.FromDescribe
		Release:       pkgRelease,
		Section:       "net",
		Priority:      "optional",
		Maintainer:    maintainer,
		Description:   description,
		Vendor:        vendor,
		Homepage:      homepage,
		License:       license,
		Changelog:     g.changelog,
		MTime:         b.date,
		Overridables: nfpm.Overridables{
			Contents: contents,
			Umask:    0o022,
		},
	}
	switch format {
	case "deb":
		info.Scripts = nfpm.Scripts{
			PreInstall:  scripts("preinst"),
			PostInstall: scripts("postinst"),
			PreRemove:   scripts("prerm"),
			PostRemove:  scripts("postrm"),
		}
	case "rpm":
		info.Scripts = nfpm.Scripts{
			PreInstall:  scripts("pre"),
			PostInstall: scripts("post"),
			PreRemove:   scripts("preun"),
			PostRemove:  scripts("postun"),
		}
		info.RPM = nfpm.RPM{
			Summary: summary,
			Group:   "System Environment/Daemons",
			Scripts: nfpm.RPMScripts{PostTrans: scripts("posttrans")},
		}
	}
	return info, nil
}

// generateCompletion writes autonomyctl's completion for shell to dst by
// running the binary that goes into the package.
func (b build) generateCompletion(ctx context.Context, shell, dst string) error {
	ctl := filepath.Join(b.binDir, "autonomyctl")
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, ctl, "completion", shell)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mkpkg: generating the %s completion with `%s completion %s` failed: %w\n%s"+
			"(the binaries in --bin-dir must run on this machine: build them for its architecture first)",
			shell, ctl, shell, err, indent(stderr.String()))
	}
	if !strings.Contains(stdout.String(), "autonomyctl") {
		return fmt.Errorf("mkpkg: `%s completion %s` printed no completion script (%d bytes of output)", ctl, shell, stdout.Len())
	}
	if err := os.WriteFile(dst, stdout.Bytes(), 0o644); err != nil {
		return fmt.Errorf("mkpkg: %w", err)
	}
	return nil
}

// removeStale deletes packages of this name left in dir by an earlier run.
func removeStale(dir string) error {
	for _, pattern := range []string{pkgName + "_*.deb", pkgName + "-*.rpm"} {
		old, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return fmt.Errorf("mkpkg: %w", err)
		}
		for _, p := range old {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("mkpkg: removing stale package: %w", err)
			}
		}
	}
	return nil
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mkpkg: %s is missing: run `make build` first (or pass --bin-dir)", path)
	}
	if err != nil {
		return fmt.Errorf("mkpkg: %w", err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("mkpkg: %s is not an executable file", path)
	}
	return nil
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ") + "\n"
}
