// Command mkpkg builds the autonomy-orchestrator .deb and .rpm with the nfpm
// Go library (no external packaging tool). `make package` runs it from the
// repository root after `make build`:
//
//	go run ./packaging/cmd/mkpkg --version "$(go run ./packaging/cmd/pkgversion)" --bin-dir bin --out dist
//
// What goes into the packages is declared in package.go; the maintainer
// scripts are in packaging/scripts/{deb,rpm}/ and the packaged config files in
// packaging/files/.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
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

	b := build{
		src:     *src,
		binDir:  *binDir,
		arch:    *arch,
		version: pkgVersion,
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
