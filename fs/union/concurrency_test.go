package union_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/fs/cow"
	"github.com/livefs/livefs/fs/sqfs"
	"github.com/livefs/livefs/internal/sqfstest"
)

// TestConcurrentReaders reads one big file from many goroutines at random
// offsets and walks a wide tree at the same time, through the mount. Run
// under -race it also checks the server's locking.
func TestConcurrentReaders(t *testing.T) {
	sqfstest.RequireRoot(t)
	src := filepath.Join(t.TempDir(), "src")
	rng := rand.New(rand.NewSource(7))
	big := make([]byte, 24<<20+12345)
	for i := 0; i < len(big); i += 4096 { // compressible but not trivially
		copy(big[i:], fmt.Sprintf("block %d %d\n", i, rng.Int()))
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "wide"), 0o755))
	must(os.WriteFile(filepath.Join(src, "big"), big, 0o644))
	want := map[string][]byte{}
	for i := 0; i < 2000; i++ {
		name := fmt.Sprintf("wide/d%02d/f%04d", i%50, i)
		data := []byte(fmt.Sprintf("file %d %s", i, bytes.Repeat([]byte{byte(i)}, i%3000)))
		must(os.MkdirAll(filepath.Dir(filepath.Join(src, name)), 0o755))
		must(os.WriteFile(filepath.Join(src, name), data, 0o644))
		want[name] = data
	}
	img := filepath.Join(t.TempDir(), "img.sb")
	sqfstest.Mksquashfs(t, src, img, "-comp", "zstd", "-b", "128K")
	mnt := mountUnion(t, img)

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			f, err := os.Open(filepath.Join(mnt, "big"))
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			r := rand.New(rand.NewSource(seed))
			buf := make([]byte, 300<<10)
			for i := 0; i < 60; i++ {
				off := r.Int63n(int64(len(big)))
				n := 1 + r.Intn(len(buf))
				k, err := f.ReadAt(buf[:n], off)
				if err != nil && err != io.EOF {
					errs <- err
					return
				}
				if !bytes.Equal(buf[:k], big[off:off+int64(k)]) {
					errs <- fmt.Errorf("big: wrong data at %d+%d", off, k)
					return
				}
			}
		}(int64(g))
	}
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for name, data := range want {
				if len(name)%4 != g {
					continue
				}
				got, err := os.ReadFile(filepath.Join(mnt, name))
				if err != nil || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("%s: %v (got %d bytes, want %d)", name, err, len(got), len(data))
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestCorruptBlockGivesEIO damages one data block inside a valid image:
// reading that file fails with EIO, everything else still reads.
func TestCorruptBlockGivesEIO(t *testing.T) {
	sqfstest.RequireRoot(t)
	src := filepath.Join(t.TempDir(), "src")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(src, 0o755))
	good := bytes.Repeat([]byte("good data "), 50000)
	bad := bytes.Repeat([]byte("doomed data "), 50000)
	must(os.WriteFile(filepath.Join(src, "good"), good, 0o644))
	must(os.WriteFile(filepath.Join(src, "bad"), bad, 0o644))
	img := filepath.Join(t.TempDir(), "img.sb")
	sqfstest.Mksquashfs(t, src, img, "-comp", "gzip", "-no-fragments")

	// Find bad's first block and overwrite its middle.
	r, err := sqfs.Open(img, nil)
	must(err)
	fi, err := r.Stat("bad")
	must(err)
	blocks, err := r.FileBlocks(fi.Sys().(*sqfs.Inode))
	must(err)
	r.Close()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	must(err)
	_, err = f.WriteAt(bytes.Repeat([]byte{0xA5}, 16), int64(blocks[0].Pos)+int64(blocks[0].Size)/2)
	must(err)
	must(f.Close())

	mnt := mountUnion(t, img)
	if _, err := os.ReadFile(filepath.Join(mnt, "bad")); err == nil || !errorsIsEIO(err) {
		t.Errorf("reading the damaged file: got %v, want EIO", err)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "good"))
	if err != nil || !bytes.Equal(got, good) {
		t.Errorf("reading the intact file: %v", err)
	}
}

// TestConcurrentListings lists one large directory from many goroutines at
// once, and abandons many listings half way, which the server must clean
// up after (it keeps directory streams itself: see noOpendirFS).
func TestConcurrentListings(t *testing.T) {
	sqfstest.RequireRoot(t)
	src := filepath.Join(t.TempDir(), "src")
	var want []string
	for i := 0; i < 3000; i++ {
		name := fmt.Sprintf("entry-%04d-%s", i, bytes.Repeat([]byte("n"), i%50))
		want = append(want, name)
		p := filepath.Join(src, "big", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(t.TempDir(), "img.sb")
	sqfstest.Mksquashfs(t, src, img, "-comp", "lz4")
	mnt := mountUnion(t, img)
	dir := filepath.Join(mnt, "big")
	check := func() error {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		if len(ents) != len(want) {
			return fmt.Errorf("listed %d entries, want %d", len(ents), len(want))
		}
		for i, e := range ents {
			if e.Name() != want[i] {
				return fmt.Errorf("entry %d is %q, want %q", i, e.Name(), want[i])
			}
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if g%2 == 0 {
					if err := check(); err != nil {
						errs <- err
						return
					}
					continue
				}
				// Read a little and walk away.
				for j := 0; j < 100; j++ {
					f, err := os.Open(dir)
					if err != nil {
						errs <- err
						return
					}
					if _, err := f.ReadDir(1 + j%7); err != nil {
						errs <- err
					}
					f.Close()
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := check(); err != nil {
		t.Errorf("after the storm: %v", err)
	}
}

// TestConcurrentRenamesAndCreates: files created through a directory
// descriptor while the directory's parent is renamed back and forth land
// in the changes layer where the directory is at that moment (the server
// keeps directories' paths between renames), and are all there after a
// remount. The first creates copy the directories up while the first
// rename copies the tree up.
func TestConcurrentRenamesAndCreates(t *testing.T) {
	sqfstest.RequireRoot(t)
	lower := filepath.Join(t.TempDir(), "lower")
	if err := os.MkdirAll(filepath.Join(lower, "a/sub/deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lower, "a/sub/deeper/old"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "lower.sb")
	sqfstest.Mksquashfs(t, lower, img, "-comp", "zstd")
	changes := filepath.Join(t.TempDir(), "changes")
	mnt, unmount := mountWritable(t, changes, cow.Aufs, img)

	const writers, files, renames = 2, 300, 200
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	for w := 0; w < writers; w++ {
		dir, err := unix.Open(filepath.Join(mnt, "a/sub/deeper"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer unix.Close(dir)
			for i := 0; i < files; i++ {
				name := fmt.Sprintf("w%d-%03d", w, i)
				fd, err := unix.Openat(dir, name, unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL, 0o644)
				if err == nil {
					_, err = unix.Write(fd, []byte(name))
					unix.Close(fd)
				}
				if err != nil {
					errs <- fmt.Errorf("create %s: %w", name, err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		names := []string{"a", "b"}
		for i := 0; i < renames; i++ {
			from, to := filepath.Join(mnt, names[i%2]), filepath.Join(mnt, names[(i+1)%2])
			if err := unix.Rename(from, to); err != nil {
				errs <- fmt.Errorf("rename %s %s: %w", from, to, err)
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	check := func(when string) {
		t.Helper()
		dir := filepath.Join(mnt, "a/sub/deeper") // renames is even: back at a
		for w := 0; w < writers; w++ {
			for i := 0; i < files; i++ {
				name := fmt.Sprintf("w%d-%03d", w, i)
				if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != name {
					t.Errorf("%s: %s: got %q (%v)", when, name, got, err)
					return
				}
			}
		}
		if got, err := os.ReadFile(filepath.Join(dir, "old")); err != nil || string(got) != "old" {
			t.Errorf("%s: old: got %q (%v)", when, got, err)
		}
		if _, err := os.Lstat(filepath.Join(mnt, "b")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: b still there (%v)", when, err)
		}
	}
	check("after the renames")
	unmount()
	mnt, _ = mountWritable(t, changes, cow.Aufs, img)
	check("after remount")
}
