package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goreleaser/chglog"
)

func TestWriteChangelog(t *testing.T) {
	src := filepath.Join("..", "..", "changelog.yml")
	date := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		version  string
		first    string // version of the first entry
		snapshot bool
	}{
		{"0.2.0", "0.2.0-1", false},
		{"0.2.0+git3.g25219b7", "0.2.0+git3.g25219b7-1", true},
		{"0.2.0+git3.g25219b7.dirty", "0.2.0+git3.g25219b7.dirty-1", true},
		{"0.0.0+git57.g25219b7", "0.0.0+git57.g25219b7-1", true}, // before the first tag
		{"0.3.0~rc.1", "0.3.0~rc.1-1", true},                     // a release candidate needs no notes yet
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			b := testBuild("")
			b.version = tt.version
			dst := filepath.Join(t.TempDir(), "changelog.yml")
			if err := b.writeChangelog(src, dst, date); err != nil {
				t.Fatal(err)
			}
			entries, err := chglog.Parse(dst)
			if err != nil {
				t.Fatal(err)
			}
			if entries[0].Semver != tt.first {
				t.Errorf("first entry %q, want %q", entries[0].Semver, tt.first)
			}
			isSnapshot := entries[0].Deb != nil && len(entries[0].Deb.Distributions) == 1 && entries[0].Deb.Distributions[0] == "UNRELEASED"
			if isSnapshot != tt.snapshot {
				t.Errorf("snapshot entry: %v, want %v", isSnapshot, tt.snapshot)
			}
			if tt.snapshot && !entries[0].Date.Equal(date) {
				t.Errorf("snapshot dated %v, want the source date %v", entries[0].Date, date)
			}
			for _, e := range entries {
				if !strings.HasSuffix(e.Semver, "-"+pkgRelease) {
					t.Errorf("entry %q lacks the package release", e.Semver)
				}
			}
		})
	}
}

// A tagged release without release notes does not build.
func TestWriteChangelog_releaseNeedsNotes(t *testing.T) {
	b := testBuild("")
	for _, v := range []string{"0.3.0", "0.3.0+git1.gabc1234"} {
		b.version = v
		err := b.writeChangelog(filepath.Join("..", "..", "changelog.yml"), filepath.Join(t.TempDir(), "c.yml"), time.Now())
		if err == nil || !strings.Contains(err.Error(), "no entry for 0.3.0") {
			t.Errorf("version %s: err = %v, want one asking for the 0.3.0 release notes", v, err)
		}
	}
}

func TestWriteChangelog_rejectsBadEntries(t *testing.T) {
	for name, yml := range map[string]string{
		"empty":       "",
		"badVersion":  "- semver: v1.0\n  date: 2026-01-01T00:00:00Z\n  packager: X <x@example>\n  changes:\n    - note: n\n",
		"noChanges":   "- semver: 1.0.0\n  date: 2026-01-01T00:00:00Z\n  packager: X <x@example>\n",
		"noPackager":  "- semver: 1.0.0\n  date: 2026-01-01T00:00:00Z\n  changes:\n    - note: n\n",
		"longNote":    "- semver: 1.0.0\n  date: 2026-01-01T00:00:00Z\n  packager: X <x@example>\n  changes:\n    - note: " + strings.Repeat("x", 73) + "\n",
		"notYAMLList": "semver: 1.0.0\n",
	} {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "changelog.yml")
			if err := os.WriteFile(src, []byte(yml), 0o644); err != nil {
				t.Fatal(err)
			}
			b := testBuild("")
			b.version = "1.0.0"
			if err := b.writeChangelog(src, filepath.Join(t.TempDir(), "out.yml"), time.Now()); err == nil {
				t.Error("accepted")
			}
		})
	}
}
