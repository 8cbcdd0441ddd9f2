// Command mkpkg builds the autonomy-orchestrator .deb and .rpm with the nfpm
// Go library (no external packaging tool). `make package` runs it from the
// repository root after `make build`:
//
//	go run ./packaging/cmd/mkpkg --version "$(go run ./packaging/cmd/pkgversion)" --bin-dir bin --out dist
//
// What goes into the packages is declared in package.go; the maintainer
// scripts are in packaging/scripts/{deb,rpm}/, the packaged config files in
// packaging/files/, the release notes in packaging/changelog.yml and the
// monitoring pack in packaging/monitoring/. Completions (bash, zsh, fish) and
// man pages are generated from the binaries themselves (man.go).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/autonomyops/orchestrator/packaging/pkgversion"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkpkg", flag.ContinueOnError)
	version := fs.String("version", "", "the Makefile's VERSION, or any `git describe --tags --always --dirty` output (default: run it); converted to a deb/rpm version by packaging/pkgversion")
	binDir := fs.String("bin-dir", "bin", "directory holding autonomy-orchestrator and autonomyctl, built for --arch")
	out := fs.String("out", "dist", "output directory for the .deb and .rpm")
	arch := fs.String("arch", "amd64", "target architecture, in Go's naming (amd64, arm64)")
	src := fs.String("src", ".", "repository root (systemd/, packaging/, docs/ are read from it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("mkpkg: unexpected arguments %q", fs.Args())
	}

	describe := *version
	if describe == "" {
		describe = pkgversion.Describe(*src)
	}
	pkgVersion, err := pkgversion.FromDescribe(describe, func() (int, bool) { return pkgversion.CommitCount(*src) })
	if err != nil {
		return fmt.Errorf("mkpkg: %w", err)
	}

	date, err := sourceDate(*src)
	if err != nil {
		return err
	}
	b := build{
		src:     *src,
		binDir:  *binDir,
		arch:    *arch,
		version: pkgVersion,
		date:    date,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	written, err := b.writeAll(ctx, *out)
	if err != nil {
		return err
	}
	fmt.Printf("mkpkg: version %q (from %q)\n", pkgVersion, describe)
	for _, p := range written {
		fmt.Printf("mkpkg: wrote %s\n", p)
	}
	return nil
}

// sourceDate is the time the packages carry (man pages, the snapshot
// changelog entry, file times): $SOURCE_DATE_EPOCH when set
// (reproducible-builds.org), else the time of the last commit, else now.
func sourceDate(dir string) (time.Time, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("mkpkg: SOURCE_DATE_EPOCH=%q is not a number of seconds", s)
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	out, err := exec.Command("git", "-C", dir, "log", "-1", "--format=%ct").Output()
	if sec, perr := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && perr == nil {
		return time.Unix(sec, 0).UTC(), nil
	}
	return time.Now().UTC().Truncate(time.Second), nil
}
