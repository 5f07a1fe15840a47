package union_test

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/internal/sqfstest"
)

// kind of a path in one layer of a random stack.
type kind int

const (
	kFile kind = iota
	kDir
	kOpaqueDir
	kWhiteout
)

// layerSpec is one layer: path -> kind, and file contents.
type layerSpec struct {
	kinds   map[string]kind
	content map[string]string
}

// randomStack makes n layers over a small name space so that layers
// collide often: whiteouts, opaque directories, files over directories and
// directories over files all occur.
func randomStack(rng *rand.Rand, n int) []layerSpec {
	names := []string{"a", "b", "c", "d", "e"}
	randPath := func() string {
		depth := 1 + rng.Intn(3)
		parts := make([]string, depth)
		for i := range parts {
			parts[i] = names[rng.Intn(len(names))]
		}
		return strings.Join(parts, "/")
	}
	layers := make([]layerSpec, n)
	for i := range layers {
		l := layerSpec{kinds: map[string]kind{}, content: map[string]string{}}
		ops := 4 + rng.Intn(12)
	next:
		for j := 0; j < ops; j++ {
			p := randPath()
			if _, ok := l.kinds[p]; ok {
				continue
			}
			// Parents must be directories in this layer.
			for d := path.Dir(p); d != "."; d = path.Dir(d) {
				if k, ok := l.kinds[d]; ok && k != kDir && k != kOpaqueDir {
					continue next
				}
			}
			for d := path.Dir(p); d != "."; d = path.Dir(d) {
				if _, ok := l.kinds[d]; !ok {
					l.kinds[d] = kDir
				}
			}
			k := kind(rng.Intn(4))
			if i == 0 && k == kWhiteout {
				k = kFile // nothing below the bottom layer to hide
			}
			l.kinds[p] = k
			if k == kFile {
				l.content[p] = fmt.Sprintf("layer %d %s %d\n", i, p, rng.Int())
			}
		}
		layers[i] = l
	}
	return layers
}

// materialize writes a layer into dir with one whiteout convention.
func materialize(t *testing.T, l layerSpec, dir string, aufs bool) {
	t.Helper()
	paths := make([]string, 0, len(l.kinds))
	for p := range l.kinds {
		paths = append(paths, p)
	}
	sort.Strings(paths) // parents first
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(dir, 0o755))
	for _, p := range paths {
		full := filepath.Join(dir, p)
		switch l.kinds[p] {
		case kFile:
			must(os.WriteFile(full, []byte(l.content[p]), 0o644))
		case kDir:
			must(os.Mkdir(full, 0o755))
		case kOpaqueDir:
			must(os.Mkdir(full, 0o755))
			if aufs {
				must(os.WriteFile(filepath.Join(full, ".wh..wh..opq"), nil, 0o444))
			} else {
				must(unix.Lsetxattr(full, "trusted.overlay.opaque", []byte("y"), 0))
			}
		case kWhiteout:
			if aufs {
				must(os.WriteFile(filepath.Join(filepath.Dir(full), ".wh."+filepath.Base(full)), nil, 0o444))
			} else {
				must(unix.Mknod(full, unix.S_IFCHR|0o000, 0))
			}
		}
	}
	// Fixed times, so that the two conventions differ in nothing else.
	ts := []unix.Timespec{unix.NsecToTimespec(1e18), unix.NsecToTimespec(1e18)}
	must(filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	}))
}

// overlayMount mounts the kernel's overlayfs read-only over lowers (bottom
// first) and returns the mount point.
func overlayMount(t *testing.T, lowers []string) string {
	t.Helper()
	rev := make([]string, len(lowers))
	for i, l := range lowers {
		rev[len(lowers)-1-i] = l
	}
	mnt := t.TempDir()
	sqfstest.Run(t, "mount", "-t", "overlay", "overlay", "-o", "lowerdir="+strings.Join(rev, ":"), mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return mnt
}

// TestStackMatchesOverlayfs stacks random layers and checks that livefs
// shows what the kernel's overlayfs shows for the same layers: once with
// overlayfs whiteouts in plain directory branches, once with aufs
// whiteouts in squashfs branches.
func TestStackMatchesOverlayfs(t *testing.T) {
	sqfstest.RequireRoot(t)
	for _, n := range []int{1, 2, 3, 5, 8, 12, 20} {
		for seed := int64(0); seed < 3; seed++ {
			t.Run(fmt.Sprintf("layers=%d/seed=%d", n, seed), func(t *testing.T) {
				rng := rand.New(rand.NewSource(seed*1000 + int64(n)))
				stack := randomStack(rng, n)
				tmp := t.TempDir()
				var overlayDirs, aufsImages []string
				for i, l := range stack {
					od := filepath.Join(tmp, fmt.Sprintf("ovl%02d", i))
					ad := filepath.Join(tmp, fmt.Sprintf("aufs%02d", i))
					materialize(t, l, od, false)
					materialize(t, l, ad, true)
					img := ad + ".sb"
					sqfstest.Mksquashfs(t, ad, img, "-comp", "lz4", "-b", "4K")
					overlayDirs = append(overlayDirs, od)
					aufsImages = append(aufsImages, img)
				}
				// overlayfs needs two lower layers at least: add an empty one.
				empty := filepath.Join(tmp, "empty")
				materialize(t, layerSpec{}, empty, false)
				want := sqfstest.SnapshotDir(t, overlayMount(t, append([]string{empty}, overlayDirs...)))
				skip := sqfstest.Fields{Ino: true, DirSize: true, DirNlink: true, RootMeta: true}
				for _, v := range []struct {
					name     string
					branches []string
				}{
					{"overlay-dirs", overlayDirs},
					{"aufs-images", aufsImages},
				} {
					got := sqfstest.SnapshotDir(t, mountUnion(t, v.branches...))
					if diff := sqfstest.Diff(want, got, skip); len(diff) > 0 {
						t.Errorf("%s: livefs differs from overlayfs:\n%s\nlayers: %v", v.name, strings.Join(diff, "\n"), describe(stack))
					}
				}
			})
		}
	}
}

func describe(stack []layerSpec) string {
	var sb strings.Builder
	for i, l := range stack {
		var ps []string
		for p, k := range l.kinds {
			ps = append(ps, fmt.Sprintf("%s:%s", p, [...]string{"file", "dir", "opaque", "whiteout"}[k]))
		}
		sort.Strings(ps)
		fmt.Fprintf(&sb, "\n  %d: %s", i, strings.Join(ps, " "))
	}
	return sb.String()
}
