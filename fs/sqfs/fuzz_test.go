package sqfs_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/livefs/livefs/fs/sqfs"
)

// FuzzReader opens arbitrary bytes as an image and exercises every API over
// the whole tree. Errors must wrap ErrCorrupt or ErrUnsupported (or be the
// expected not-found and end-of-file results); panics fail. The seeds in
// testdata/fuzz/FuzzReader are real images made by
// testdata/gen-fuzz-seeds.sh.
func FuzzReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := sqfs.NewReader(bytes.NewReader(b), int64(len(b)), &sqfs.Options{
			Name: "fuzz.sqfs", CacheBytes: 64 << 10, MetaCacheBytes: 256 << 10, Workers: 2,
		})
		if err != nil {
			if r != nil {
				t.Fatal("NewReader returned a Reader and an error")
			}
			checkFuzzErr(t, "open", err)
			return
		}
		exercise(t, r, 10_000, 16<<20)
	})
}

// checkFuzzErr fails the test unless err wraps a format error or one of the
// other errors the operation may legitimately return.
func checkFuzzErr(t *testing.T, op string, err error, also ...error) {
	t.Helper()
	if err == nil || errors.Is(err, sqfs.ErrCorrupt) || errors.Is(err, sqfs.ErrUnsupported) {
		return
	}
	for _, a := range also {
		if errors.Is(err, a) {
			return
		}
	}
	t.Fatalf("%s: unexpected error %v (%T)", op, err, err)
}

// pathErrs are what resolving a path may fail with in a well-formed image
// too: links may dangle, loop, or pass through files.
var pathErrs = []error{fs.ErrNotExist, syscall.ELOOP, syscall.ENOTDIR}

// exercise walks the image through the inode and io/fs APIs, visiting at
// most maxEntries entries and reading at most maxBytes of file data.
func exercise(t *testing.T, r *sqfs.Reader, maxEntries int, maxBytes int64) {
	t.Helper()
	entries := 0
	budget := maxBytes
	var paths []string
	sb := r.Superblock()
	hasExport := sb.HasExportTable()
	err := r.Walk(func(p string, ino *sqfs.Inode, err error) error {
		if entries++; entries > maxEntries {
			return fs.SkipAll
		}
		if err != nil {
			checkFuzzErr(t, "walk "+p, err)
			return nil
		}
		paths = append(paths, p)
		_ = ino.Mode()
		_ = ino.UnixMode()
		xs, err := r.Xattrs(ino)
		checkFuzzErr(t, "xattrs "+p, err)
		if len(xs) > 0 {
			v, err := r.Xattr(ino, xs[0].Name)
			checkFuzzErr(t, "xattr "+p, err)
			if err == nil && !bytes.Equal(v, xs[0].Value) {
				t.Fatalf("xattr %s of %s: Xattr and Xattrs disagree", xs[0].Name, p)
			}
		}
		if hasExport {
			got, err := r.InodeByNumber(ino.Number)
			checkFuzzErr(t, "inode by number "+p, err)
			_ = got
		}
		switch ino.Type {
		case sqfs.TypeDir:
			ents, err := r.ReadDirInode(ino)
			checkFuzzErr(t, "readdir "+p, err)
			lookups := append([]string{"\x00nothing", "~~~", "a"}, firstNames(ents, 4)...)
			for _, name := range lookups {
				child, err := r.Lookup(ino, name)
				checkFuzzErr(t, "lookup "+p+"/"+name, err, fs.ErrNotExist)
				if err == nil && child == nil {
					t.Fatal("Lookup returned no inode and no error")
				}
			}
		case sqfs.TypeFile:
			readFile(t, r, ino, p, &budget)
		}
		return nil
	})
	checkFuzzErr(t, "walk", err)
	// The io/fs view of what the walk found.
	for _, p := range paths {
		if entries--; entries < 0 {
			break
		}
		if !fs.ValidPath(p) {
			continue // a name the decoder let through must still be a valid path
		}
		fi, err := r.Lstat(p)
		checkFuzzErr(t, "lstat "+p, err, pathErrs...)
		fi2, err := r.Stat(p)
		checkFuzzErr(t, "stat "+p, err, pathErrs...)
		_ = fi2
		if fi == nil {
			continue
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			_, err := r.ReadLink(p)
			checkFuzzErr(t, "readlink "+p, err, pathErrs...)
		case fi.IsDir():
			_, err := r.ReadDir(p)
			checkFuzzErr(t, "readdir "+p, err, pathErrs...)
		case fi.Mode().IsRegular() && fi.Size() <= budget:
			b, err := r.ReadFile(p)
			checkFuzzErr(t, "readfile "+p, err, pathErrs...)
			budget -= int64(len(b))
		}
	}
	_, err = r.ReadDir(".")
	checkFuzzErr(t, "readdir .", err)
}

func firstNames(ents []sqfs.DirEntry, n int) []string {
	var out []string
	for i := 0; i < len(ents) && i < n; i++ {
		out = append(out, ents[i].Name)
	}
	if len(ents) > n {
		out = append(out, ents[len(ents)-1].Name)
	}
	return out
}

// readFile reads a regular file sequentially through a FileReader and at a
// few offsets with ReadAt, within the byte budget, and checks that the two
// agree.
func readFile(t *testing.T, r *sqfs.Reader, ino *sqfs.Inode, p string, budget *int64) {
	t.Helper()
	fr, err := r.OpenFile(ino)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	size := int64(ino.Size)
	if size < 0 || size > *budget {
		// Too big to read whole: sample its start and end.
		buf := make([]byte, 4096)
		for _, off := range []int64{0, size - 1} {
			if off < 0 {
				continue
			}
			n, err := fr.ReadAt(buf, off)
			checkFuzzErr(t, "read "+p, err, io.EOF)
			*budget -= int64(n)
		}
		return
	}
	*budget -= size
	whole := make([]byte, size)
	n, err := fr.ReadAt(whole, 0)
	if err == io.EOF && n == len(whole) {
		err = nil
	}
	checkFuzzErr(t, "read "+p, err)
	if err != nil {
		return
	}
	if n != len(whole) {
		t.Fatalf("read %s: %d of %d bytes and no error", p, n, len(whole))
	}
	for _, off := range []int64{0, size / 3, size / 2, size - 1, size, size + 1} {
		if off < 0 {
			continue
		}
		buf := make([]byte, 700)
		n, err := r.ReadAt(ino, buf, off)
		checkFuzzErr(t, "readat "+p, err, io.EOF)
		if n > len(buf) || (err == nil && n != len(buf)) {
			t.Fatalf("readat %s at %d: %d bytes, err %v", p, off, n, err)
		}
		if err != nil && err != io.EOF {
			continue
		}
		if want := whole[min(off, size):min(off+int64(n), size)]; !bytes.Equal(buf[:n], want) {
			t.Fatalf("readat %s at %d: %d bytes differ from the sequential read", p, off, n)
		}
	}
}

// TestFuzzSeeds checks that every seed of FuzzReader is a valid image that
// opens and walks without error, so the fuzzer starts from deep coverage
// (a seed that stopped decoding would silently fuzz only the superblock).
func TestFuzzSeeds(t *testing.T) {
	files, err := filepath.Glob("testdata/fuzz/FuzzReader/seed-*")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 6 {
		t.Fatalf("%d seeds, want one per compressor at least (run testdata/gen-fuzz-seeds.sh)", len(files))
	}
	comps := map[sqfs.Compressor]bool{}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			header, rest, _ := strings.Cut(string(raw), "\n")
			quoted, ok := strings.CutPrefix(strings.TrimSpace(rest), "[]byte(")
			quoted, ok2 := strings.CutSuffix(quoted, ")")
			if header != "go test fuzz v1" || !ok || !ok2 {
				t.Fatalf("not a corpus file of one []byte")
			}
			s, err := strconv.Unquote(quoted)
			if err != nil {
				t.Fatal(err)
			}
			if len(s) > 8<<10 {
				t.Errorf("seed of %d bytes, want at most 8 KiB", len(s))
			}
			r, err := openBytes(t, []byte(s), file)
			if err != nil {
				t.Fatal(err)
			}
			comps[r.Superblock().Compressor] = true
			got, errs := inodeResults(r)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if got["data a"] != "hello, squashfs\n" || got["inode l"] == "" || got["inode d/e/f"] == "" {
				t.Errorf("seed does not hold the generator's tree: %v", got)
			}
		})
	}
	for _, c := range []sqfs.Compressor{sqfs.Gzip, sqfs.LZMA, sqfs.LZO, sqfs.XZ, sqfs.LZ4, sqfs.Zstd} {
		if !comps[c] {
			t.Errorf("no seed uses %v", c)
		}
	}
}
