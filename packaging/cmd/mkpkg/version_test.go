package main

import (
	"errors"
	"testing"
)

func TestPackageVersion(t *testing.T) {
	known := func() (int, bool) { return 42, true }
	unknown := func() (int, bool) { return 0, false }
	tests := []struct {
		name     string
		describe string
		commits  func() (int, bool)
		want     string
	}{
		{"tag", "v1.2.3", known, "1.2.3"},
		{"tagNoV", "1.2.3", known, "1.2.3"},
		{"shortTag", "v2.0", known, "2.0"},
		{"prerelease", "v1.2.3-rc.1", known, "1.2.3~rc.1"},
		{"prereleaseHyphen", "v1.2.3-rc-1", known, "1.2.3~rc.1"},
		{"aheadOfTag", "v1.2.3-4-gabc1234", known, "1.2.3+4.gabc1234"},
		{"aheadDirty", "v1.2.3-4-gabc1234-dirty", known, "1.2.3+4.gabc1234.dirty"},
		{"aheadOfPrerelease", "v1.2.3-rc.1-4-gabc1234", known, "1.2.3~rc.1+4.gabc1234"},
		{"tagDirty", "v1.2.3-dirty", known, "1.2.3+dirty"},
		{"buildMeta", "v1.2.3+hotfix-2", known, "1.2.3+hotfix.2"},
		{"bareHash", "0bd6a22", known, "0.0.0+git42.g0bd6a22"},
		{"bareHashDirty", "0bd6a22-dirty", known, "0.0.0+git42.g0bd6a22.dirty"},
		{"bareHashUnknownCount", "0bd6a22", unknown, "0.0.0+git.g0bd6a22"},
		{"dev", "dev", known, "0.0.0+dev"},
		{"spaces", " v1.0.0\n", known, "1.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := packageVersion(tt.describe, tt.commits)
			if err != nil {
				t.Fatalf("packageVersion(%q): %v", tt.describe, err)
			}
			if got != tt.want {
				t.Fatalf("packageVersion(%q) = %q, want %q", tt.describe, got, tt.want)
			}
		})
	}
}

func TestPackageVersion_rejects(t *testing.T) {
	for _, in := range []string{"", "release", "v1.2.3 beta", "vX.Y", "v1.2.3-rc_1"} {
		if got, err := packageVersion(in, func() (int, bool) { return 1, true }); !errors.Is(err, errBadVersion) {
			t.Errorf("packageVersion(%q) = %q, %v; want errBadVersion", in, got, err)
		}
	}
}
