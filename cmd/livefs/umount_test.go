package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/internal/sqfstest"
)

// TestUnmountReleasesFiles serves a directory, an image and a changes
// directory that all live on one tmpfs, unmounts livefs in each way there
// is, and then unmounts the tmpfs: after livefs umount (which waits for
// the server) that must succeed at once; umount(8) and fusermount3 -u
// return before the server has noticed, which must then let go within a
// bound.
func TestUnmountReleasesFiles(t *testing.T) {
	sqfstest.RequireRoot(t)
	sqfstest.RequireTool(t, "fusermount3")
	img := testImage(t)
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		unmount []string // nil: livefs umount
		waits   bool
	}{
		{"livefs umount", nil, true},
		{"umount", []string{"umount"}, false},
		{"fusermount3 -u", []string{"fusermount3", "-u"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsdir := t.TempDir()
			sqfstest.Run(t, "mount", "-t", "tmpfs", "-o", "size=64m", "livefs-test", fsdir)
			t.Cleanup(func() {
				if isMounted(t, fsdir) {
					exec.Command("umount", "-l", fsdir).Run()
				}
			})
			writeFile(t, filepath.Join(fsdir, "lower/etc/motd"), "hello\n", 0o644)
			if err := os.WriteFile(filepath.Join(fsdir, "img.sb"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			mnt := t.TempDir()
			if out, code := runBin(t, "mount", "--daemon", "--changes", filepath.Join(fsdir, "changes"),
				filepath.Join(fsdir, "img.sb"), filepath.Join(fsdir, "lower"), mnt); code != 0 {
				t.Fatalf("mount: exit %d: %s", code, out)
			}
			umountAtEnd(t, mnt)
			// Use all three: read from the image and the directory, copy up.
			for _, p := range []string{"usr/share/words", "etc/motd", "etc/hostname"} {
				if _, err := os.ReadFile(filepath.Join(mnt, p)); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(mnt, "etc/hostname"), []byte("changed\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if tc.unmount == nil {
				if out, code := runBin(t, "umount", mnt); code != 0 {
					t.Fatalf("livefs umount: exit %d: %s", code, out)
				}
			} else {
				sqfstest.Run(t, tc.unmount[0], append(tc.unmount[1:], mnt)...)
			}
			unmounted := time.Since(start)
			if b, err := os.ReadFile(filepath.Join(fsdir, "changes/etc/hostname")); err != nil || string(b) != "changed\n" {
				t.Errorf("changes/etc/hostname after unmount: %q, %v", b, err)
			}
			start = time.Now()
			err := unix.Unmount(fsdir, 0)
			if tc.waits {
				if err != nil {
					t.Fatalf("umount of the tmpfs right after %s: %v", tc.name, err)
				}
			} else {
				const bound = 5 * time.Second
				for errors.Is(err, unix.EBUSY) && time.Since(start) < bound {
					time.Sleep(2 * time.Millisecond)
					err = unix.Unmount(fsdir, 0)
				}
				if err != nil {
					t.Fatalf("umount of the tmpfs after %s: still %v after %v", tc.name, err, bound)
				}
			}
			t.Logf("%s took %v; the tmpfs was free %v later", tc.name, unmounted, time.Since(start))
		})
	}
}
