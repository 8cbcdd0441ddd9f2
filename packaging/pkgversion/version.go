// Package pkgversion derives the one version string of a build from git: the
// deb and rpm version, and what `autonomy-orchestrator --version` and
// `autonomyctl --version` print. The Makefile gets it from
// packaging/cmd/pkgversion and links it into both binaries; mkpkg uses the
// same conversion, so the three always agree.
package pkgversion

import (
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// ErrBadVersion is returned when a `git describe` string cannot be turned
// into a package version.
var ErrBadVersion = errors.New("bad version")

var (
	// describeSuffix matches the "-<commits>-g<hash>" git describe appends
	// when HEAD is past the last tag.
	describeSuffix = regexp.MustCompile(`^(.+)-([0-9]+)-g([0-9a-f]{4,40})$`)
	// releaseRe matches a tag without its leading "v": 1.2.3, 1.2, 2,
	// optionally followed by a pre-release (1.2.3-rc.1, 1.2.3~rc1) or
	// build metadata (1.2.3+hotfix).
	releaseRe = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)*)(?:[-~]([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$`)
	// bareHash is what `git describe --always` prints when there is no tag
	// (an abbreviated hash: at least 7 hex digits).
	bareHash = regexp.MustCompile(`^g?([0-9a-f]{7,40})$`)
	// validPkgVersion is the intersection of what dpkg and rpm accept in the
	// upstream part of a version (rpm forbids '-', deb needs a leading digit).
	validPkgVersion = regexp.MustCompile(`^[0-9][0-9A-Za-z.+~]*$`)
)

// FromDescribe turns the output of `git describe --tags --always --dirty`
// into a version that dpkg and rpm both accept and order correctly:
//
//	v1.2.3                  -> 1.2.3
//	v1.2.3-rc.1             -> 1.2.3~rc.1              (sorts before 1.2.3)
//	v1.2.3-4-gabc1234       -> 1.2.3+git4.gabc1234     (sorts after 1.2.3)
//	v1.2.3-4-gabc1234-dirty -> 1.2.3+git4.gabc1234.dirty
//	abc1234 (no tag yet)    -> 0.0.0+git<N>.gabc1234   (N = commits in HEAD, when known)
//	dev                     -> 0.0.0+dev
//
// It is idempotent: a version it returned converts to itself, so a version
// already converted (the Makefile's VERSION) can be passed again.
//
// commits returns the number of commits reachable from HEAD; it is used only
// for untagged trees, so that successive snapshot packages still upgrade in
// order. It may return false when the count is unknown.
func FromDescribe(describe string, commits func() (int, bool)) (string, error) {
	s := strings.TrimSpace(describe)
	if s == "" {
		return "", fmt.Errorf("%w: empty version", ErrBadVersion)
	}
	var meta []string
	dirty := false
	if strings.HasSuffix(s, "-dirty") {
		dirty = true
		s = strings.TrimSuffix(s, "-dirty")
	}

	var upstream, pre string
	switch {
	case bareHash.MatchString(s):
		hash := bareHash.FindStringSubmatch(s)[1]
		upstream = "0.0.0"
		if n, ok := commits(); ok {
			meta = append(meta, fmt.Sprintf("git%d", n), "g"+hash)
		} else {
			meta = append(meta, "git", "g"+hash)
		}
	case s == "dev":
		upstream = "0.0.0"
		meta = append(meta, "dev")
	default:
		base := strings.TrimPrefix(s, "v")
		var ahead, hash string
		if m := describeSuffix.FindStringSubmatch(base); m != nil {
			base, ahead, hash = m[1], m[2], m[3]
		}
		m := releaseRe.FindStringSubmatch(base)
		if m == nil {
			return "", fmt.Errorf("%w: %q is neither a tag like v1.2.3 nor a commit hash", ErrBadVersion, describe)
		}
		upstream, pre = m[1], strings.ReplaceAll(m[2], "-", ".")
		if m[3] != "" {
			meta = append(meta, strings.ReplaceAll(m[3], "-", "."))
		}
		if ahead != "" {
			meta = append(meta, "git"+ahead, "g"+hash)
		}
	}
	if dirty {
		meta = append(meta, "dirty")
	}

	v := upstream
	if pre != "" {
		v += "~" + pre
	}
	if len(meta) > 0 {
		v += "+" + strings.Join(meta, ".")
	}
	if !validPkgVersion.MatchString(v) {
		return "", fmt.Errorf("%w: %q became %q, which dpkg or rpm would refuse", ErrBadVersion, describe, v)
	}
	return v, nil
}

// Describe runs `git describe --tags --always --dirty` in dir, or returns
// "dev" outside a git checkout (or without git).
func Describe(dir string) string {
	out, err := exec.Command("git", "-C", dir, "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		return "dev"
	}
	return strings.TrimSpace(string(out))
}

// CommitCount is the number of commits reachable from HEAD in dir, used to
// order snapshot versions built before the first tag.
func CommitCount(dir string) (int, bool) {
	out, err := exec.Command("git", "-C", dir, "rev-list", "--count", "HEAD").Output()
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		return 0, false
	}
	return n, true
}

// FromGit is the version of the tree in dir: FromDescribe(Describe(dir)).
func FromGit(dir string) (string, error) {
	return FromDescribe(Describe(dir), func() (int, bool) { return CommitCount(dir) })
}
