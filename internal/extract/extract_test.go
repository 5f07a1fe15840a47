package extract_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/livefs/livefs/fs/sqfs"
	"github.com/livefs/livefs/internal/extract"
	"github.com/livefs/livefs/internal/sqfstest"
)

// TestExtractMatchesKernel extracts images of the sample tree and compares
// the result with the kernel's mount of the same image: every type, mode,
// owner, time, xattr, hard-link group, device number and byte of content.
func TestExtractMatchesKernel(t *testing.T) {
	sqfstest.RequireRoot(t)
	src := filepath.Join(t.TempDir(), "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	sqfstest.MakeTree(t, src, sqfstest.TreeOptions{WideDir: 300, Special: true})
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"zstd-128K", []string{"-comp", "zstd"}},
		{"xz-4K", []string{"-comp", "xz", "-b", "4K"}},
		{"gzip-1M-nofrag", []string{"-comp", "gzip", "-b", "1M", "-no-fragments"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "img.sqfs")
			sqfstest.Mksquashfs(t, src, img, tc.args...)
			r, err := sqfs.Open(img, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			dst := filepath.Join(t.TempDir(), "out")
			if _, err := extract.Extract(r, dst, extract.Options{Owners: true, Warn: func(err error) { t.Error(err) }}); err != nil {
				t.Fatal(err)
			}
			want := sqfstest.SnapshotDir(t, sqfstest.KernelMount(t, img))
			got := sqfstest.SnapshotDir(t, dst)
			// Inode numbers and directory sizes belong to the target file system.
			if diff := sqfstest.Diff(want, got, sqfstest.Fields{Ino: true, DirSize: true}); len(diff) > 0 {
				t.Errorf("extracted tree differs from the kernel's mount:\n%s", strings.Join(diff, "\n"))
			}
			// Holes stay holes: the sparse file must not occupy its 5 MiB.
			fi, err := os.Stat(filepath.Join(dst, "var/sparse"))
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); st.Blocks*512 > 3<<20 { // 5 MiB file, at most two 1 MiB blocks of data
				t.Errorf("var/sparse occupies %d bytes: holes were written out", st.Blocks*512)
			}
		})
	}
}

// TestExtractSubtree extracts one directory and one file; like unsquashfs,
// they keep their paths inside the image.
func TestExtractSubtree(t *testing.T) {
	sqfstest.RequireTool(t, "mksquashfs")
	src := filepath.Join(t.TempDir(), "src")
	for _, p := range []string{"a/b/c.txt", "a/d.txt", "e.txt"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(t.TempDir(), "img.sqfs")
	sqfstest.Mksquashfs(t, src, img)
	r, err := sqfs.Open(img, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"a/b", []string{"a/b/c.txt"}},
		{"a/d.txt", []string{"a/d.txt"}},
		{".", []string{"a/b/c.txt", "a/d.txt", "e.txt"}},
	} {
		dst := t.TempDir()
		if _, err := extract.Extract(r, dst, extract.Options{Path: tc.path}); err != nil {
			t.Fatalf("extract %s: %v", tc.path, err)
		}
		var got []string
		filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				rel, _ := filepath.Rel(dst, p)
				got = append(got, rel)
				if data, _ := os.ReadFile(p); string(data) != rel {
					t.Errorf("%s holds %q", rel, data)
				}
			}
			return err
		})
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("extract %s: got %v, want %v", tc.path, got, tc.want)
		}
	}
}
