package liveinit

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livefs/livefs/internal/sqfstest"
)

// TestIdentify checks the superblock probe against blkid on file systems
// made by their own mkfs tools.
func TestIdentify(t *testing.T) {
	blkid := sqfstest.RequireTool(t, "blkid")
	dir := t.TempDir()
	tests := []struct {
		name, tool string
		args       []string
		wantType   string
	}{
		{"ext4", "mkfs.ext4", []string{"-q", "-F", "-L", "LIVEFS-EXT"}, "ext4"},
		{"fat32", "mkfs.vfat", []string{"-F", "32", "-n", "LIVEFS32"}, "vfat"},
		{"fat16", "mkfs.vfat", []string{"-F", "16", "-n", "LIVEFS16"}, "vfat"},
		{"iso9660", "xorriso", nil, "iso9660"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := filepath.Join(dir, tt.name+".img")
			tool := sqfstest.RequireTool(t, tt.tool)
			if tt.tool == "xorriso" {
				src := filepath.Join(dir, "iso-src")
				os.MkdirAll(filepath.Join(src, "livefs"), 0o755)
				sqfstest.Run(t, tool, "-as", "mkisofs", "-quiet", "-V", "LIVEFS_ISO", "-o", img, src)
			} else {
				if err := os.WriteFile(img, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				os.Truncate(img, 64<<20)
				sqfstest.Run(t, tool, append(tt.args, img)...)
			}
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, ok := Identify(f)
			if !ok {
				t.Fatalf("Identify: not recognised")
			}
			want := FSIdentity{Type: tt.wantType, Label: blkidTag(t, blkid, img, "LABEL"), UUID: blkidTag(t, blkid, img, "UUID")}
			if got != want {
				t.Errorf("Identify = %+v, want (blkid) %+v", got, want)
			}
		})
	}
	if _, ok := Identify(bytes.NewReader(make([]byte, 64<<10))); ok {
		t.Errorf("Identify recognised zeros")
	}
}

func blkidTag(t *testing.T, blkid, img, tag string) string {
	t.Helper()
	out, err := exec.Command(blkid, "-p", "-o", "value", "-s", tag, img).Output()
	if err != nil {
		t.Fatalf("blkid -s %s %s: %v", tag, img, err)
	}
	return strings.TrimSpace(string(out))
}
