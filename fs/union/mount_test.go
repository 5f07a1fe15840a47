package union_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livefs/livefs/fs/sqfs"
	"github.com/livefs/livefs/fs/union"
	"github.com/livefs/livefs/internal/sqfstest"
)

// mountUnion serves branches (bottom first) in-process at a new directory
// and unmounts it when the test ends.
func mountUnion(t testing.TB, branches ...string) string {
	t.Helper()
	sqfstest.RequireRoot(t)
	var layers []union.Layer
	for _, b := range branches {
		l, err := union.OpenBranch(b, &sqfs.Options{CacheBytes: 8 << 20})
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	u := union.New(layers, union.Options{})
	mnt := t.TempDir()
	server, err := union.Mount(mnt, u, union.MountOptions{AllowOther: true})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
			exec.Command("umount", "-l", mnt).Run()
		}
		u.Close()
	})
	return mnt
}

var overlayMarkers = []string{"trusted.overlay.", "user.overlay."}

// TestMountMatchesKernel mounts images of the sample tree through livefs
// and compares the mounted tree with the kernel's loop mount.
func TestMountMatchesKernel(t *testing.T) {
	sqfstest.RequireRoot(t)
	src := filepath.Join(t.TempDir(), "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	sqfstest.MakeTree(t, src, sqfstest.TreeOptions{WideDir: 1000, Special: true})
	for _, c := range sqfstest.ImageCases() {
		if !c.KernelCanMount() {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "img.sqfs")
			c.Build(t, src, img)
			want := sqfstest.SnapshotDir(t, sqfstest.KernelMount(t, img))
			want.DropXattrs(overlayMarkers...)
			dropWhiteouts(want)
			mnt := mountUnion(t, img)
			got := sqfstest.SnapshotDir(t, mnt)
			if diff := sqfstest.Diff(want, got, sqfstest.Fields{Ino: true}); len(diff) > 0 {
				t.Errorf("livefs mount differs from the kernel's (%d entries):\n%s", len(want), strings.Join(diff, "\n"))
			}
			// Inode numbers are stable across remounts.
			again := sqfstest.SnapshotDir(t, mountUnion(t, img))
			for p, e := range got {
				if again[p] == nil || again[p].Ino != e.Ino {
					t.Errorf("%s: inode %d, after remount %v", p, e.Ino, again[p])
					break
				}
			}
		})
	}
}

// dropWhiteouts removes overlayfs whiteouts (0/0 character devices), which
// a union hides, from a snapshot.
func dropWhiteouts(tr sqfstest.Tree) {
	for p, e := range tr {
		if e.Type == "chardev" && e.Major == 0 && e.Minor == 0 {
			delete(tr, p)
		}
	}
}
