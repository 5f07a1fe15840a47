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

// kernelSupports reports whether this kernel's squashfs can mount images of
// a compressor (lzma never: the kernel dropped it).
func kernelCanMount(comp string) bool { return comp != "lzma" }

type imageCase struct {
	name   string
	writer string // mksquashfs or gensquashfs
	comp   string
	block  int
	args   []string
}

func imageCases() []imageCase {
	var cases []imageCase
	comps := []string{"gzip", "xz", "lz4", "zstd", "lzo", "lzma"}
	for _, comp := range comps {
		for _, bs := range []int{4096, 131072, 1048576} {
			cases = append(cases, imageCase{writer: "mksquashfs", comp: comp, block: bs})
		}
	}
	variants := []struct {
		comp string
		args []string
	}{
		{"gzip", []string{"-no-fragments"}},
		{"gzip", []string{"-always-use-fragments"}},
		{"gzip", []string{"-no-xattrs", "-no-exports"}},
		{"gzip", []string{"-noI", "-noD", "-noF", "-noX"}},
		{"gzip", []string{"-no-duplicates", "-no-tailends"}},
		{"xz", []string{"-Xbcj", "x86,arm,armthumb,powerpc,sparc,ia64"}},
		{"xz", []string{"-Xdict-size", "25%"}},
		{"lz4", []string{"-Xhc"}},
		{"zstd", []string{"-Xcompression-level", "22"}},
		{"gzip", []string{"-Xcompression-level", "1", "-Xwindow-size", "10"}},
		{"lzo", []string{"-Xalgorithm", "lzo1x_1"}},
	}
	for _, v := range variants {
		cases = append(cases, imageCase{writer: "mksquashfs", comp: v.comp, block: 131072, args: v.args})
	}
	for _, comp := range []string{"gzip", "xz", "lz4", "zstd", "lzo"} {
		cases = append(cases, imageCase{writer: "gensquashfs", comp: comp, block: 131072})
	}
	cases = append(cases, imageCase{writer: "gensquashfs", comp: "xz", block: 4096, args: []string{"--exportable"}})
	for i := range cases {
		c := &cases[i]
		c.name = strings.Join(append([]string{c.writer, c.comp, intString(c.block)}, c.args...), "_")
		c.name = strings.NewReplacer("-", "", ",", "+", "%", "pct").Replace(c.name)
	}
	return cases
}

func intString(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func buildImage(t *testing.T, c imageCase, src, img string) {
	t.Helper()
	switch c.writer {
	case "mksquashfs":
		sqfstest.Mksquashfs(t, src, img, append([]string{"-comp", c.comp, "-b", intString(c.block)}, c.args...)...)
	case "gensquashfs":
		sqfstest.Gensquashfs(t, src, img, append([]string{"-c", c.comp, "-b", intString(c.block)}, c.args...)...)
	}
}

// TestDifferential builds images of the sample tree with every compressor,
// block size and writer, and checks that the decoder's view equals the
// kernel's view of the same image (for lzma, which the kernel cannot mount,
// unsquashfs's extraction).
func TestDifferential(t *testing.T) {
	src := sampleTree(t)
	for _, c := range imageCases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			img := filepath.Join(t.TempDir(), "img.sqfs")
			buildImage(t, c, src, img)
			r, err := sqfs.Open(img, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got := snapshotImage(t, r)
			var want sqfstest.Tree
			skip := sqfstest.Fields{}
			if kernelCanMount(c.comp) {
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
