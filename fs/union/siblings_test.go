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

// TestPushRacesCopyUp: reading a bundle's small file pushes its siblings
// into the kernel's cache; the first of them, held open for reading (so
// that its later handles share that cache), is copied up and written
// while its push runs (each store is delayed to make sure). Reads after
// the write, and after the push would have ended, see it, never the
// bundle's data stored late over it.
func TestPushRacesCopyUp(t *testing.T) {
	sqfstest.RequireRoot(t)
	const dirs, files, size = 10, 4, 15 << 10
	const pushDelay = 5 * time.Millisecond
	src := t.TempDir()
	for d := range dirs {
		dir := filepath.Join(src, fmt.Sprintf("d%02d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range files {
			data := bytes.Repeat(fmt.Appendf(nil, "bundle %d/%d ", d, f), size/12)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d", f)), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	img := filepath.Join(t.TempDir(), "lower.sb")
	sqfstest.Mksquashfs(t, src, img, "-comp", "lz4")
	mnt, _ := mountWritable(t, filepath.Join(t.TempDir(), "changes"), cow.Aufs, img)
	union.DelayPushes(pushDelay)
	defer union.DelayPushes(0)
	stale := 0
	for d := range dirs {
		dir := filepath.Join(mnt, fmt.Sprintf("d%02d", d))
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents { // the kernel knows every sibling: they can be pushed
			if _, err := os.Lstat(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
		victim := filepath.Join(dir, "f01") // pushed first
		reader, err := os.Open(victim)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.ReadFile(filepath.Join(dir, "f00")); err != nil { // starts the push
			t.Fatal(err)
		}
		writer, err := os.OpenFile(victim, os.O_RDWR, 0) // copies it up
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Appendf(nil, "written in d%02d", d)
		if _, err := writer.WriteAt(want, 0); err != nil {
			t.Fatal(err)
		}
		for _, when := range []string{"at once", "after the push"} {
			if when != "at once" {
				time.Sleep(files * pushDelay)
			}
			got := make([]byte, len(want))
			if _, err := reader.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: read %q %s, after writing %q", victim, got, when, want)
				stale++
			}
		}
		writer.Close()
		reader.Close()
	}
	if stale > 0 {
		t.Errorf("%d of %d files showed the bundle's data after a write", stale, dirs)
	}
}
