package union_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/fs/cow"
	"github.com/livefs/livefs/internal/sqfstest"
)

// exchangeLower is the lower layer of the rename tests.
var exchangeLower = map[string]string{
	"f1": "lower f1", "f2": "lower f2",
	"d1/a": "d1/a", "d1/b": "d1/b", "d2/c": "d2/c",
	"sub/f3": "sub/f3", "sub/d3/e": "sub/d3/e",
}

// TestExchangeMatchesOverlayfs runs renameat2 with RENAME_EXCHANGE and
// RENAME_NOREPLACE over files and directories, from the lower layer and
// from the changes layer, against the kernel's overlayfs: the result of
// every step and the tree after it must match, and again after a remount.
func TestExchangeMatchesOverlayfs(t *testing.T) {
	sqfstest.RequireRoot(t)
	rename := func(p, q string, flags uint) op {
		name := map[uint]string{unix.RENAME_EXCHANGE: "exchange", unix.RENAME_NOREPLACE: "noreplace"}[flags]
		return op{fmt.Sprintf("%s %s %s", name, p, q), func(r string) string {
			return errStr(unix.Renameat2(unix.AT_FDCWD, filepath.Join(r, p), unix.AT_FDCWD, filepath.Join(r, q), flags))
		}}
	}
	write := func(p, data string) op {
		return op{"write " + p, func(r string) string {
			return writeOp(filepath.Join(r, p), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, data, -1)
		}}
	}
	mkdir := func(p string) op {
		return op{"mkdir " + p, func(r string) string { return errStr(unix.Mkdir(filepath.Join(r, p), 0o755)) }}
	}
	const x, nr = unix.RENAME_EXCHANGE, unix.RENAME_NOREPLACE
	steps := []op{
		write("u1", "upper u1"), write("u2", "upper u2"),
		mkdir("ud1"), write("ud1/in", "in ud1"), mkdir("ud2"), mkdir("sub/ud"), write("sub/ud/z", "z"),
		rename("f1", "f2", x),          // lower file with lower file
		rename("f1", "u1", x),          // lower with upper
		rename("u1", "u2", x),          // upper with upper
		rename("u1", "ud1", x),         // file with directory
		rename("ud1", "ud2", x),        // directories
		rename("sub/f3", "ud2", x),     // across directories, a directory into a merged one
		rename("sub/ud", "ud1", x),     // directory into the root, out of a merged one
		rename("f2", "ud1/z", x),       // file into a moved directory
		rename("u2", "f2", x),          // back again
		rename("f1", "missing", x),     // ENOENT
		rename("missing", "f1", x),     // ENOENT
		rename("ud2", "ud2/in", x),     // ENOTDIR or ENOENT, from the VFS
		rename("ud1", "ud1/z", x),      // into itself: EINVAL
		rename("f1", "f2", nr),         // EEXIST
		rename("f1", "d1", nr),         // EEXIST
		rename("f1", "f9", nr),         // a lower file to a new name
		rename("ud1", "newdir", nr),    // an upper directory to a new name
		rename("missing", "f10", nr),   // ENOENT
		rename("f9", "f9", x),          // the same name
		write("d1/a", "changed below"), // copy-up inside a merged directory
		rename("sub/d3/e", "d1/a", x),  // two lower files in lower directories
	}
	tmp := t.TempDir()
	lower := writeLower(t, exchangeLower)
	kmnt := mountKernelOverlay(t, tmp, lower)
	kernel := make([]kernelStep, len(steps))
	for i, o := range steps {
		kernel[i] = kernelStep{o.do(kmnt), comparable(sqfstest.SnapshotDir(t, kmnt))}
		t.Logf("step %d %s: %s", i, o.desc, kernel[i].result)
	}
	for _, format := range []cow.Format{cow.Aufs, cow.Overlay} {
		t.Run(fmt.Sprintf("format=%v", format), func(t *testing.T) {
			changes := filepath.Join(t.TempDir(), "changes")
			fmnt, unmount := mountWritable(t, changes, format, lower)
			for i, o := range steps {
				want := kernel[i]
				if got := o.do(fmnt); got != want.result {
					t.Fatalf("step %d %s: livefs %q, overlayfs %q", i, o.desc, got, want.result)
				}
				if diff := sqfstest.Diff(want.tree, comparable(sqfstest.SnapshotDir(t, fmnt)), sqfstest.Fields{}); len(diff) > 0 {
					t.Fatalf("step %d %s: trees differ:\n%s", i, o.desc, strings.Join(diff, "\n"))
				}
			}
			unmount()
			fmnt, _ = mountWritable(t, changes, format, lower)
			if diff := sqfstest.Diff(kernel[len(kernel)-1].tree, comparable(sqfstest.SnapshotDir(t, fmnt)), sqfstest.Fields{}); len(diff) > 0 {
				t.Fatalf("after remount: trees differ:\n%s", strings.Join(diff, "\n"))
			}
		})
	}
}

type kernelStep struct {
	result string
	tree   sqfstest.Tree
}

// TestExchangeLowerDirs exchanges directories that come from the lower
// layer, which overlayfs refuses with EXDEV: livefs copies them up whole,
// as for a rename. Nodes under them that the kernel already knows must
// then work at their new place: writes into them, and copy-ups.
func TestExchangeLowerDirs(t *testing.T) {
	sqfstest.RequireRoot(t)
	lower := writeLower(t, exchangeLower)
	changes := filepath.Join(t.TempDir(), "changes")
	mnt, unmount := mountWritable(t, changes, cow.Aufs, lower)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(mnt, "d1/new"), []byte("new in d1"), 0o644))
	sqfstest.SnapshotDir(t, mnt) // the kernel knows every node
	must(unix.Renameat2(unix.AT_FDCWD, filepath.Join(mnt, "d1"), unix.AT_FDCWD, filepath.Join(mnt, "d2"), unix.RENAME_EXCHANGE))
	must(unix.Renameat2(unix.AT_FDCWD, filepath.Join(mnt, "sub/d3"), unix.AT_FDCWD, filepath.Join(mnt, "f1"), unix.RENAME_EXCHANGE))
	// Changes below moved directories, through nodes made before the move.
	must(os.WriteFile(filepath.Join(mnt, "d2/more"), []byte("more"), 0o644))
	f, err := os.OpenFile(filepath.Join(mnt, "d2/a"), os.O_WRONLY|os.O_APPEND, 0)
	must(err)
	_, err = f.WriteString(" appended")
	must(err)
	must(f.Close())
	must(os.Remove(filepath.Join(mnt, "d1/c")))
	must(os.WriteFile(filepath.Join(mnt, "f1/e"), []byte("e rewritten"), 0o644))
	want := map[string]string{
		"d1": "", "d2/a": "d1/a appended", "d2/b": "d1/b", "d2/new": "new in d1", "d2/more": "more",
		"f1/e": "e rewritten", "sub/d3": "lower f1", "f2": "lower f2", "sub/f3": "sub/f3",
	}
	check := func(when string) {
		t.Helper()
		got := map[string]string{}
		err := filepath.Walk(mnt, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(mnt, p)
			switch {
			case fi.Mode().IsRegular():
				b, err := os.ReadFile(p)
				got[rel] = string(b)
				return err
			case fi.IsDir() && rel != ".":
				if ents, err := os.ReadDir(p); err == nil && len(ents) == 0 {
					got[rel] = ""
				}
			}
			return nil
		})
		must(err)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s:\ngot  %v\nwant %v", when, got, want)
		}
	}
	check("after the exchanges")
	unmount()
	mnt, _ = mountWritable(t, changes, cow.Aufs, lower)
	check("after remount")
	if _, err := os.Stat(filepath.Join(mnt, "d1/a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("d1/a: got %v, want it gone", err)
	}
}
