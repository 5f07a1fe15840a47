package sqfs_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/livefs/livefs/fs/sqfs"
	"github.com/livefs/livefs/internal/sqfstest"
)

var (
	treeOnce sync.Once
	treeDir  string
)

// sampleTree builds the sample tree once per test binary.
func sampleTree(t *testing.T) string {
	t.Helper()
	sqfstest.RequireRoot(t)
	treeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "livefs-tree-")
		if err != nil {
			t.Fatal(err)
		}
		treeDir = filepath.Join(dir, "root")
		if err := os.Mkdir(treeDir, 0o755); err != nil {
			t.Fatal(err)
		}
		sqfstest.MakeTree(t, treeDir, sqfstest.TreeOptions{WideDir: 1000, Special: true})
	})
	if treeDir == "" {
		t.Fatal("sample tree was not built")
	}
	return treeDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if treeDir != "" {
		os.RemoveAll(filepath.Dir(treeDir))
	}
	os.Exit(code)
}

// TestDifferential builds images of the sample tree with every compressor,
// block size and writer, and checks that the decoder's view equals the
// kernel's view of the same image (for lzma, which the kernel cannot mount,
// unsquashfs's extraction).
func TestDifferential(t *testing.T) {
	src := sampleTree(t)
	for _, c := range sqfstest.ImageCases() {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			img := filepath.Join(t.TempDir(), "img.sqfs")
			c.Build(t, src, img)
			r, err := sqfs.Open(img, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got := snapshotImage(t, r)
			var want sqfstest.Tree
			skip := sqfstest.Fields{}
			if c.KernelCanMount() {
				want = sqfstest.SnapshotDir(t, sqfstest.KernelMount(t, img))
			} else {
				dst := filepath.Join(t.TempDir(), "x")
				sqfstest.RequireTool(t, "unsquashfs")
				sqfstest.Run(t, "unsquashfs", "-no-progress", "-q", "-d", dst, img)
				want = sqfstest.SnapshotDir(t, dst)
				skip = sqfstest.Fields{DirSize: true, Ino: true}
			}
			if diff := sqfstest.Diff(want, got, skip); len(diff) > 0 {
				t.Errorf("decoder view differs from the kernel's (%d entries):\n%s", len(want), strings.Join(diff, "\n"))
			}
		})
	}
}
