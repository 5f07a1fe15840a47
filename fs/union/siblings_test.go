package union_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/livefs/livefs/fs/cow"
	"github.com/livefs/livefs/fs/union"
	"github.com/livefs/livefs/internal/sqfstest"
)

// TestPushRacesCopyUp: reading a bundle's small file pushes its sibling
// into the kernel's cache; the sibling is opened, copied up and written
// between the push's read and its store. Reads after the push, through
// the writer and anew, see the write, never the bundle's data stored over
// it. Without passthrough the write goes through the kernel's cache too.
func TestPushRacesCopyUp(t *testing.T) {
	sqfstest.RequireRoot(t)
	src := t.TempDir()
	for _, f := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(src, f), bytes.Repeat([]byte("bundle "+f+" "), 1000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(t.TempDir(), "lower.sb")
	sqfstest.Mksquashfs(t, src, img, "-comp", "lz4")
	for _, noPassthrough := range []bool{true, false} {
		t.Run(fmt.Sprintf("nopassthrough=%v", noPassthrough), func(t *testing.T) {
			// Changes in RAM: no sync at close, which could outlast the
			// push's pause.
			ram, err := os.MkdirTemp("/dev/shm", "livefs-test-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(ram) })
			mnt, _, _ := mountWritableUnion(t, filepath.Join(ram, "changes"), cow.Aufs, union.MountOptions{NoPassthrough: noPassthrough}, img)
			// The push of b stops between its read and its store until
			// the write has had its chance (or 200 ms, if it waits for
			// the push, as it must).
			read, release := make(chan struct{}), make(chan struct{})
			union.BeforeStore(func() {
				close(read)
				select {
				case <-release:
				case <-time.After(200 * time.Millisecond):
				}
			})
			defer union.BeforeStore(nil)
			if _, err := os.ReadDir(mnt); err != nil { // the order of siblings
				t.Fatal(err)
			}
			if _, err := os.Lstat(filepath.Join(mnt, "b")); err != nil { // known: it can be pushed
				t.Fatal(err)
			}
			if _, err := os.ReadFile(filepath.Join(mnt, "a")); err != nil { // starts the push
				t.Fatal(err)
			}
			select {
			case <-read:
			case <-time.After(10 * time.Second):
				t.Fatal("reading a did not push b")
			}
			b := filepath.Join(mnt, "b")
			writer, err := os.OpenFile(b, os.O_RDWR, 0) // copies it up
			if err != nil {
				t.Fatal(err)
			}
			defer writer.Close()
			want := []byte("written")
			if _, err := writer.WriteAt(want, 0); err != nil {
				t.Fatal(err)
			}
			for _, when := range []string{"before", "after"} {
				if when == "after" {
					close(release)
					time.Sleep(50 * time.Millisecond) // the store, if still to come
				}
				// The first read also has the kernel see the file's new
				// mtime and drop what it had cached.
				got := make([]byte, len(want))
				if _, err := writer.ReadAt(got, 0); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("read %q through the writer %s the push ended, having written %q", got, when, want)
				}
			}
			if got, err := os.ReadFile(b); err != nil || !bytes.HasPrefix(got, want) {
				t.Errorf("read %q, %v after the push, having written %q", got[:min(len(got), len(want))], err, want)
			}
		})
	}
}
