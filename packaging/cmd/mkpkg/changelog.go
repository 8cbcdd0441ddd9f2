package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/goreleaser/chglog"

	"github.com/autonomyops/orchestrator/packaging/pkgversion"
)

// writeChangelog reads packaging/changelog.yml (chglog's format, newest
// first), puts a development-snapshot entry on top when the package version
// is not one of its releases, appends the package release to every version,
// and writes the result to dst for nfpm (Info.Changelog): the .deb's
// changelog.Debian.gz and the .rpm's %changelog.
func (b build) writeChangelog(src, dst string, date time.Time) error {
	entries, err := chglog.Parse(src)
	if err != nil {
		return fmt.Errorf("mkpkg: %w", err)
	}
	if len(entries) == 0 {
		return fmt.Errorf("mkpkg: %s has no entry", src)
	}
	for _, e := range entries {
		if v, err := pkgversion.FromDescribe(e.Semver, func() (int, bool) { return 0, false }); err != nil || v != e.Semver {
			return fmt.Errorf("mkpkg: %s: version %q is not a package version like 1.2.3", src, e.Semver)
		}
		if e.Date.IsZero() || e.Packager == "" || len(e.Changes) == 0 {
			return fmt.Errorf("mkpkg: %s: entry %s needs a date, a packager and at least one change", src, e.Semver)
		}
		for _, c := range e.Changes {
			if n := len(strings.Split(c.Note, "\n")[0]); n > 72 {
				return fmt.Errorf("mkpkg: %s: entry %s: a note of %d characters (at most 72: %q)", src, e.Semver, n, c.Note)
			}
		}
	}
	if !strings.HasPrefix(b.version, "0.0.0+") && !hasRelease(entries, b.version) {
		// Between tags: 1.2.3+git4.gabc1234 sorts after 1.2.3, which must have
		// an entry (tagging a release means adding its notes).
		base := strings.SplitN(strings.SplitN(b.version, "+", 2)[0], "~", 2)[0]
		if !strings.Contains(b.version, "~") && !hasRelease(entries, base) {
			return fmt.Errorf("mkpkg: %s has no entry for %s, the release %s builds on: add its release notes", src, base, b.version)
		}
	}
	if !hasRelease(entries, b.version) {
		snapshot := &chglog.ChangeLog{
			Semver:   b.version,
			Date:     date.UTC(),
			Packager: maintainer,
			Changes: chglog.ChangeLogChanges{{
				Note: "Development snapshot built from git, not a release.",
			}},
		}
		snapshot.Deb = &chglog.ChangelogDeb{Urgency: "low", Distributions: []string{"UNRELEASED"}}
		entries = append(chglog.ChangeLogEntries{snapshot}, entries...)
	}
	for _, e := range entries {
		e.Semver += "-" + pkgRelease
	}
	if err := entries.Save(dst); err != nil {
		return fmt.Errorf("mkpkg: %w", err)
	}
	return nil
}

func hasRelease(entries chglog.ChangeLogEntries, v string) bool {
	for _, e := range entries {
		if e.Semver == v {
			return true
		}
	}
	return false
}
