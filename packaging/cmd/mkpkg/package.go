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

// Installed paths.
const (
	unitDst       = "/usr/lib/systemd/system/autonomy-orchestrator.service"
	configDst     = "/etc/autonomy/orchestrator.yaml"
	tokensDst     = "/etc/autonomy/tokens.yaml"
	completionDst = "/usr/share/bash-completion/completions/autonomyctl"
	docDir        = "/usr/share/doc/autonomy-orchestrator"
)

// formats are the packagers mkpkg runs, in order.
var formats = []string{"deb", "rpm"}

// build describes one packaging run.
type build struct {
	src     string // repository root
	binDir  string // holds autonomy-orchestrator and autonomyctl
	arch    string // Go architecture name
	version string // already converted by pkgversion.FromDescribe
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
	completion := filepath.Join(tmp, "autonomyctl.bash")
	if err := b.generateCompletion(ctx, completion); err != nil {
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
		p, err := b.write(format, completion, out)
		if err != nil {
			return written, err
		}
		written = append(written, p)
	}
	return written, nil
}

// write builds the package of one format into dir.
func (b build) write(format, completion, dir string) (string, error) {
	packager, err := nfpm.Get(format)
	if err != nil {
		return "", fmt.Errorf("mkpkg: %w", err)
	}
	info := nfpm.WithDefaults(b.info(format, completion))
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
func (b build) info(format, completion string) *nfpm.Info {
	src := func(p string) string { return filepath.Join(b.src, filepath.FromSlash(p)) }
	rootAutonomy := func(mode os.FileMode) *files.ContentFileInfo {
		return &files.ContentFileInfo{Owner: "root", Group: "autonomy", Mode: mode}
	}
	root := func(mode os.FileMode) *files.ContentFileInfo {
		return &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode}
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
		{Source: completion, Destination: completionDst, FileInfo: root(0o644)},
		{Source: src("docs/install.md"), Destination: docDir + "/install.md", FileInfo: root(0o644)},
		{Source: src("packaging/files/copyright"), Destination: docDir + "/copyright", FileInfo: root(0o644)},
		// /var/lib/autonomy is deliberately not in the package: dpkg and rpm
		// delete a directory they own when it is empty on removal, and the data
		// directory must outlive the package. The install scripts create it
		// (0700 autonomy:autonomy) and nothing ever deletes it.
	}

	scripts := func(name string) string { return src("packaging/scripts/" + format + "/" + name) }
	info := &nfpm.Info{
		Name:          pkgName,
		Arch:          b.arch,
		Platform:      "linux",
		Version:       b.version,
		VersionSchema: "none", // already converted by pkgversion.FromDescribe
		Release:       "1",
		Section:       "net",
		Priority:      "optional",
		Maintainer:    maintainer,
		Description:   description,
		Vendor:        vendor,
		Homepage:      homepage,
		License:       license,
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
	return info
}

// generateCompletion writes autonomyctl's bash completion to dst by running
// the binary that goes into the package.
func (b build) generateCompletion(ctx context.Context, dst string) error {
	ctl := filepath.Join(b.binDir, "autonomyctl")
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, ctl, "completion", "bash")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mkpkg: generating the bash completion with `%s completion bash` failed: %w\n%s"+
			"(the binaries in --bin-dir must run on this machine: build them for its architecture first)",
			ctl, err, indent(stderr.String()))
	}
	if !strings.Contains(stdout.String(), "autonomyctl") {
		return fmt.Errorf("mkpkg: `%s completion bash` printed no completion script (%d bytes of output)", ctl, stdout.Len())
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
