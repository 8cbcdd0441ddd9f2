// Command pkgversion prints the version of this build, derived from git the
// way the packages are versioned (packaging/pkgversion):
//
//	go run ./packaging/cmd/pkgversion            # from `git describe --tags` of the current directory
//	go run ./packaging/cmd/pkgversion v1.2.3-4-gabc1234
//
// The Makefile links its output into both binaries (--version) and passes it
// to mkpkg, so a tag v0.2.0 gives 0.2.0 everywhere and three commits later
// 0.2.0+git3.g<hash>.
package main

import (
	"fmt"
	"os"

	"github.com/autonomyops/orchestrator/packaging/pkgversion"
)

func main() {
	var v string
	var err error
	switch len(os.Args) {
	case 1:
		v, err = pkgversion.FromGit(".")
	case 2:
		v, err = pkgversion.FromDescribe(os.Args[1], func() (int, bool) { return pkgversion.CommitCount(".") })
	default:
		err = fmt.Errorf("usage: pkgversion [git-describe-output]")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pkgversion:", err)
		os.Exit(1)
	}
	fmt.Println(v)
}
