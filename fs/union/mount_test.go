package union_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livefs/livefs/fs/sqfs"
	"github.com/livefs/livefs/fs/union"
	"github.com/livefs/livefs/internal/fuseuring"
	"github.com/livefs/livefs/internal/sqfstest"
)

// mountUnion serves branches (bottom first) in-process at a new directory
// and unmounts it when the test ends.
func mountUnion(t testing.TB, branches ...string) string {
	t.Helper()
	mnt, _ := mountUnionWith(t, union.MountOptions{AllowOther: true}, branches...)
	return mnt
}

// mountUnionWith is mountUnion with options; it also returns the union.
func mountUnionWith(t testing.TB, o union.MountOptions, branches ...string) (string, *union.Union) {
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
	server, err := union.Mount(mnt, u, o)
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
	return mnt, u
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
			// Served over io_uring queues where the kernel has them, then
			// over /dev/fuse: the same tree, and the same inode numbers
			// across the remount.
			mnt, u := mountUnionWith(t, union.MountOptions{AllowOther: true}, img)
			if _, exists := fuseuring.KernelSwitch(); exists && !u.URing() {
				t.Errorf("the kernel has FUSE over io_uring, but the mount serves over /dev/fuse")
			}
			got := sqfstest.SnapshotDir(t, mnt)
			if diff := sqfstest.Diff(want, got, sqfstest.Fields{Ino: true}); len(diff) > 0 {
				t.Errorf("livefs mount differs from the kernel's (%d entries):\n%s", len(want), strings.Join(diff, "\n"))
			}
			classic, u := mountUnionWith(t, union.MountOptions{AllowOther: true, NoURing: true}, img)
			if u.URing() {
				t.Errorf("NoURing mount serves over io_uring")
			}
			again := sqfstest.SnapshotDir(t, classic)
			if diff := sqfstest.Diff(got, again, sqfstest.Fields{}); len(diff) > 0 {
				t.Errorf("the /dev/fuse mount differs from the io_uring one:\n%s", strings.Join(diff, "\n"))
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
