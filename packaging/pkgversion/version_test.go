package pkgversion

import (
	"errors"
	"os/exec"
	"testing"
)

func TestFromDescribe(t *testing.T) {
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
		{"aheadOfTag", "v1.2.3-4-gabc1234", known, "1.2.3+git4.gabc1234"},
		{"aheadDirty", "v1.2.3-4-gabc1234-dirty", known, "1.2.3+git4.gabc1234.dirty"},
		{"aheadOfPrerelease", "v1.2.3-rc.1-4-gabc1234", known, "1.2.3~rc.1+git4.gabc1234"},
		{"tagDirty", "v1.2.3-dirty", known, "1.2.3+dirty"},
		{"buildMeta", "v1.2.3+hotfix-2", known, "1.2.3+hotfix.2"},
		{"bareHash", "0bd6a22", known, "0.0.0+git42.g0bd6a22"},
		{"bareHashDirty", "0bd6a22-dirty", known, "0.0.0+git42.g0bd6a22.dirty"},
		{"bareHashUnknownCount", "0bd6a22", unknown, "0.0.0+git.g0bd6a22"},
		{"dev", "dev", known, "0.0.0+dev"},
		{"spaces", " v1.0.0\n", known, "1.0.0"},
		{"tagV020", "v0.2.0", known, "0.2.0"},
		{"aheadOfV020", "v0.2.0-3-g25219b7", known, "0.2.0+git3.g25219b7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromDescribe(tt.describe, tt.commits)
			if err != nil {
				t.Fatalf("FromDescribe(%q): %v", tt.describe, err)
			}
			if got != tt.want {
				t.Fatalf("FromDescribe(%q) = %q, want %q", tt.describe, got, tt.want)
			}
		})
	}
}

func TestFromDescribe_rejects(t *testing.T) {
	for _, in := range []string{"", "release", "v1.2.3 beta", "vX.Y", "v1.2.3-rc_1"} {
		if got, err := FromDescribe(in, func() (int, bool) { return 1, true }); !errors.Is(err, ErrBadVersion) {
			t.Errorf("FromDescribe(%q) = %q, %v; want ErrBadVersion", in, got, err)
		}
	}
}

// The Makefile passes an already converted version to mkpkg, and `make
// VERSION=...` may pass either form: converting twice must change nothing.
func TestFromDescribe_idempotent(t *testing.T) {
	commits := func() (int, bool) { return 42, true }
	for _, in := range []string{"v1.2.3", "v1.2.3-rc.1", "v1.2.3-4-gabc1234", "v1.2.3-4-gabc1234-dirty",
		"v1.2.3-rc.1-4-gabc1234", "v1.2.3+hotfix-2", "0bd6a22", "0bd6a22-dirty", "dev"} {
		once, err := FromDescribe(in, commits)
		if err != nil {
			t.Fatalf("FromDescribe(%q): %v", in, err)
		}
		twice, err := FromDescribe(once, func() (int, bool) { t.Fatal("commit count asked for a converted version"); return 0, false })
		if err != nil || twice != once {
			t.Errorf("FromDescribe(%q) = %q, converted again = %q, %v", in, once, twice, err)
		}
	}
}

// Later commits sort after the tag and in commit order, for dpkg (checked
// with dpkg --compare-versions when it is installed).
func TestFromDescribe_ordersWithDpkg(t *testing.T) {
	dpkg, err := exec.LookPath("dpkg")
	if err != nil {
		t.Skip("dpkg not installed")
	}
	commits := func() (int, bool) { return 42, true }
	order := []string{"v0.2.0-rc.1", "v0.2.0", "v0.2.0-3-gabc1234", "v0.2.0-12-gdef5678", "v0.2.1"}
	var vs []string
	for _, d := range order {
		v, err := FromDescribe(d, commits)
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	for i := 1; i < len(vs); i++ {
		if err := exec.Command(dpkg, "--compare-versions", vs[i-1], "lt", vs[i]).Run(); err != nil {
			t.Errorf("dpkg: %s is not lower than %s", vs[i-1], vs[i])
		}
	}
}
