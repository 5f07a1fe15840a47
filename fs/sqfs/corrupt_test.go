package sqfs_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/fs/sqfs"
	"github.com/livefs/livefs/internal/sqfstest"
)

// smallTree writes a tiny tree exercising every table of an image: data
// blocks and fragments, a symlink, nested directories and xattrs (inline,
// shared out of line, on a directory and on the root).
func smallTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	rng := rand.New(rand.NewSource(7))
	text := func(n int) []byte {
		words := []string{"squash", "inode", "block", "fragment", "xattr", "\n"}
		var b bytes.Buffer
		for b.Len() < n {
			b.WriteString(words[rng.Intn(len(words))])
			b.WriteByte(' ')
		}
		return b.Bytes()[:n]
	}
	random := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	files := []struct {
		name string
		data []byte
	}{
		{"hello.txt", []byte("hello, squashfs\n")},
		{"empty", nil},
		{"text.bin", text(3*4096 + 700)}, // compressible: compressed blocks and a tail
		{"rand.bin", random(4096 + 300)}, // incompressible: a block stored raw
		{"sub/inner.txt", text(900)},
		{"sub/deeper/leaf", text(40)},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{"link": "hello.txt", "sub/up": "../text.bin"} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	shared := text(120)
	for _, x := range []struct {
		path, name string
		value      []byte
	}{
		{".", "user.root", []byte("r")},
		{"hello.txt", "user.color", []byte("blue")},
		{"hello.txt", "user.shared", shared},
		{"text.bin", "user.shared", shared},
		{"sub", "user.shared", shared},
		{"sub", "user.big", random(600)},
	} {
		setXattr(t, filepath.Join(dir, x.path), x.name, x.value)
	}
	return dir
}

func setXattr(t *testing.T, path, name string, value []byte) {
	t.Helper()
	if err := unix.Lsetxattr(path, name, value, 0); err != nil {
		if errors.Is(err, unix.ENOTSUP) && !sqfstest.InCI() {
			t.Skipf("SKIPPED, NOT PASSED: the temporary directory does not support user xattrs: %v", err)
		}
		t.Fatalf("setxattr %s %s: %v", path, name, err)
	}
}

// buildSmall packs src with mksquashfs, 4K blocks, and returns the image
// path and bytes.
func buildSmall(t *testing.T, src string, args ...string) (string, []byte) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "img.sqfs")
	sqfstest.Mksquashfs(t, src, img, append([]string{"-b", "4096", "-all-root", "-mkfs-time", "0", "-all-time", "0", "-nopad"}, args...)...)
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return img, b
}

// region is a byte range of an image holding one structure.
type region struct {
	name       string
	start, end uint64
}

// tableRegions splits an image into its structures using the superblock and
// the lookup tables, in the order mksquashfs lays them out.
func tableRegions(t *testing.T, img []byte) []region {
	t.Helper()
	le := binary.LittleEndian
	u64 := func(off uint64) uint64 {
		if off+8 > uint64(len(img)) {
			t.Fatalf("table pointer at %d beyond the image", off)
		}
		return le.Uint64(img[off:])
	}
	used := le.Uint64(img[40:])
	starts := map[string]uint64{
		"superblock":      0,
		"data blocks":     96,
		"inode table":     le.Uint64(img[64:]),
		"directory table": le.Uint64(img[72:]),
		"id table":        u64(le.Uint64(img[48:])),
		"id lookup":       le.Uint64(img[48:]),
		"end":             used,
	}
	if le.Uint16(img[24:])&uint16(sqfs.FlagCompressorOptions) != 0 {
		starts["compressor options"] = 96
		starts["data blocks"] = 96 + 2 + uint64(le.Uint16(img[96:])&0x7fff)
	}
	if p := le.Uint64(img[80:]); p != ^uint64(0) {
		starts["fragment table"] = u64(p)
		starts["fragment lookup"] = p
	}
	if p := le.Uint64(img[88:]); p != ^uint64(0) {
		starts["export table"] = u64(p)
		starts["export lookup"] = p
	}
	if p := le.Uint64(img[56:]); p != ^uint64(0) {
		starts["xattr key/value table"] = u64(p)
		starts["xattr id table"] = u64(p + 16)
		starts["xattr id lookup"] = p
	}
	var out []region
	for name, s := range starts {
		if name != "end" {
			out = append(out, region{name: name, start: s})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	for i := range out {
		out[i].end = used
		if i+1 < len(out) {
			out[i].end = out[i+1].start
		}
	}
	// The superblock region is its fields' bytes only.
	out[0].end = 96
	return slices.DeleteFunc(out, func(r region) bool { return r.start >= r.end })
}

// fsResults walks an image through the io/fs API and records what every
// operation returned: successful results in got (op and path to a
// description), failures in errs.
func fsResults(r *sqfs.Reader) (got map[string]string, errs []error) {
	got = map[string]string{}
	fail := func(op, p string, err error) { errs = append(errs, fmt.Errorf("%s %s: %w", op, p, err)) }
	_ = fs.WalkDir(r, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			fail("walk", p, err)
			return nil
		}
		if d.IsDir() {
			ents, err := r.ReadDir(p)
			if err != nil {
				fail("readdir", p, err)
			} else {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name()+":"+e.Type().String())
				}
				got["readdir "+p] = strings.Join(names, ",")
			}
		}
		for _, op := range []struct {
			name string
			stat func(string) (fs.FileInfo, error)
		}{{"stat", r.Stat}, {"lstat", r.Lstat}} {
			fi, err := op.stat(p)
			if err != nil {
				fail(op.name, p, err)
				continue
			}
			ino := fi.Sys().(*sqfs.Inode)
			got[op.name+" "+p] = fmt.Sprintf("%s %v size=%d uid=%d gid=%d nlink=%d mtime=%d ino=%d", fi.Name(), fi.Mode(), fi.Size(), ino.UID, ino.GID, ino.Nlink, ino.MTime, ino.Number)
			xs, err := r.Xattrs(ino)
			if err != nil {
				fail(op.name+" xattrs", p, err)
				continue
			}
			got[op.name+" xattrs "+p] = fmt.Sprint(xs)
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := r.ReadLink(p)
			if err != nil {
				fail("readlink", p, err)
			} else {
				got["readlink "+p] = target
			}
			fallthrough // ReadFile follows the link
		case d.Type().IsRegular():
			b, err := r.ReadFile(p)
			if err != nil {
				fail("readfile", p, err)
			} else {
				got["readfile "+p] = string(b)
			}
		}
		return nil
	})
	return got, errs
}

// inodeResults walks an image through the inode API (no name lookups, so a
// damaged listing cannot turn into a missing name) and records every result.
func inodeResults(r *sqfs.Reader) (got map[string]string, errs []error) {
	got = map[string]string{}
	err := r.Walk(func(p string, ino *sqfs.Inode, err error) error {
		if err != nil {
			errs = append(errs, fmt.Errorf("walk %s: %w", p, err))
			return nil
		}
		got["inode "+p] = fmt.Sprintf("%s perm=%o size=%d uid=%d gid=%d nlink=%d mtime=%d ino=%d target=%q",
			ino.Type, ino.Perm, ino.Size, ino.UID, ino.GID, ino.Nlink, ino.MTime, ino.Number, ino.Target)
		if xs, err := r.Xattrs(ino); err != nil {
			errs = append(errs, fmt.Errorf("xattrs %s: %w", p, err))
		} else {
			got["xattrs "+p] = fmt.Sprint(xs)
		}
		if ino.Type == sqfs.TypeFile && ino.Size <= 1<<20 {
			buf := make([]byte, ino.Size)
			n, err := r.ReadAt(ino, buf, 0)
			if n != len(buf) {
				errs = append(errs, fmt.Errorf("read %s: %d of %d bytes: %w", p, n, len(buf), err))
			} else {
				got["data "+p] = string(buf)
			}
		}
		return nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("walk: %w", err))
	}
	return got, errs
}

// checkErrs fails the test unless every error wraps one of the wanted kinds
// and names the image.
func checkErrs(t *testing.T, errs []error, image string, kinds ...error) {
	t.Helper()
	for _, err := range errs {
		ok := false
		for _, k := range kinds {
			ok = ok || errors.Is(err, k)
		}
		if !ok {
			t.Errorf("error wraps none of %v: %v", kinds, err)
		} else if !strings.Contains(err.Error(), image) {
			t.Errorf("error does not name the image %q: %v", image, err)
		}
	}
}

// checkSubset fails the test for every result in got that differs from want.
func checkSubset(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, g := range got {
		w, ok := want[k]
		if !ok {
			t.Errorf("%s: unexpected result %.80q", k, g)
		} else if g != w {
			t.Errorf("%s:\n got %.200q\nwant %.200q", k, g, w)
		}
	}
}

func openBytes(t *testing.T, b []byte, name string) (*sqfs.Reader, error) {
	t.Helper()
	return sqfs.NewReader(bytes.NewReader(b), int64(len(b)), &sqfs.Options{Name: name, CacheBytes: 64 << 10, MetaCacheBytes: 64 << 10})
}

// TestTruncated cuts images at every structure boundary and at a stride;
// every operation must then succeed with the original's result or fail with
// ErrCorrupt naming the image.
func TestTruncated(t *testing.T) {
	src := smallTree(t)
	for _, comp := range []string{"gzip", "xz"} {
		t.Run(comp, func(t *testing.T) {
			_, orig := buildSmall(t, src, "-comp", comp)
			r0, err := openBytes(t, orig, "orig")
			if err != nil {
				t.Fatal(err)
			}
			want, errs := fsResults(r0)
			if len(errs) > 0 {
				t.Fatalf("intact image: %v", errs)
			}
			if len(want) < 30 {
				t.Fatalf("intact image walk found only %d results", len(want))
			}
			cuts := map[int]bool{}
			for _, reg := range tableRegions(t, orig) {
				for _, c := range []uint64{reg.start - 1, reg.start, reg.start + 1, reg.start + 2, reg.start + 8, reg.end - 1} {
					cuts[int(c)] = true
				}
			}
			for _, off := range []int{4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 72, 80, 88, 95} {
				cuts[off] = true
			}
			for n := 0; n < len(orig); n += 61 {
				cuts[n] = true
			}
			var lengths []int
			for n := range cuts {
				if n >= 0 && n < len(orig) {
					lengths = append(lengths, n)
				}
			}
			sort.Ints(lengths)
			path := filepath.Join(t.TempDir(), "truncated.sqfs")
			for _, n := range lengths {
				// As cut: bytes used exceeds the file, Open must refuse.
				if err := os.WriteFile(path, orig[:n], 0o644); err != nil {
					t.Fatal(err)
				}
				r, err := sqfs.Open(path, nil)
				if err == nil {
					r.Close()
					t.Errorf("Open of image cut to %d of %d bytes succeeded", n, len(orig))
				} else {
					checkErrs(t, []error{err}, path, sqfs.ErrCorrupt)
				}
				// With bytes used patched to the cut, as if the image had been
				// written that short: tables beyond are simply gone.
				if n < 96 {
					continue
				}
				b := slices.Clone(orig[:n])
				binary.LittleEndian.PutUint64(b[40:], uint64(n))
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Fatal(err)
				}
				r, err = sqfs.Open(path, nil)
				if err != nil {
					checkErrs(t, []error{err}, path, sqfs.ErrCorrupt)
					continue
				}
				got, errs := fsResults(r)
				r.Close()
				checkErrs(t, errs, path, sqfs.ErrCorrupt)
				checkSubset(t, got, want)
				if t.Failed() {
					t.Fatalf("image cut at %d of %d bytes", n, len(orig))
				}
			}
		})
	}
}

// allocated returns the bytes allocated while f runs.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestFlippedBytes damages every table of compressed and uncompressed
// images at several positions. Decoding must not panic, every error must
// wrap ErrCorrupt (or ErrUnsupported for the superblock), and file data read
// back without error from an image whose data region was damaged must equal
// the original when the data is checksummed (gzip).
func TestFlippedBytes(t *testing.T) {
	src := smallTree(t)
	images := []struct {
		name string
		args []string
		// dataChecked: damaged compressed data is detected (zlib's adler32),
		// so data read without error must be the original.
		dataChecked bool
	}{
		{"gzip", []string{"-comp", "gzip"}, true},
		{"gzip-uncompressed", []string{"-comp", "gzip", "-noI", "-noD", "-noF", "-noX"}, false},
		{"gzip-data-only", []string{"-comp", "gzip", "-noI", "-noX"}, true},
		{"xz", []string{"-comp", "xz"}, true},
	}
	const name = "flipped.sqfs"
	for _, im := range images {
		t.Run(im.name, func(t *testing.T) {
			_, orig := buildSmall(t, src, im.args...)
			r0, err := openBytes(t, orig, name)
			if err != nil {
				t.Fatal(err)
			}
			want, errs := inodeResults(r0)
			if len(errs) > 0 {
				t.Fatalf("intact image: %v", errs)
			}
			for _, reg := range tableRegions(t, orig) {
				t.Run(strings.ReplaceAll(reg.name, " ", "_"), func(t *testing.T) {
					positions := map[uint64]bool{reg.start: true, reg.end - 1: true}
					if reg.name == "superblock" {
						for p := uint64(0); p < 96; p++ {
							positions[p] = true
						}
					}
					for i := uint64(1); i < 12; i++ {
						positions[reg.start+(reg.end-reg.start)*i/12] = true
					}
					var ps []uint64
					for p := range positions {
						ps = append(ps, p)
					}
					slices.Sort(ps)
					for _, p := range ps {
						for _, mask := range []byte{0x01, 0x80, 0xff} {
							b := slices.Clone(orig)
							b[p] ^= mask
							var got map[string]string
							var errs []error
							alloc := allocated(func() {
								r, err := openBytes(t, b, name)
								if err != nil {
									errs = append(errs, err)
									return
								}
								got, errs = inodeResults(r)
							})
							kinds := []error{sqfs.ErrCorrupt}
							if reg.name == "superblock" {
								kinds = append(kinds, sqfs.ErrUnsupported)
							}
							checkErrs(t, errs, name, kinds...)
							if reg.name == "data blocks" {
								// Metadata is intact: everything but data must
								// match, and data too when it is checksummed.
								for k, v := range got {
									// rand.bin's block is stored raw: nothing can tell.
									if !strings.HasPrefix(k, "data ") || im.dataChecked && k != "data rand.bin" {
										if v != want[k] {
											t.Errorf("%s: differs from the original after flipping byte %d", k, p)
										}
									}
								}
							}
							if alloc > 16<<20 {
								t.Errorf("allocated %d MiB", alloc>>20)
							}
							if t.Failed() {
								t.Fatalf("byte %d (%s at +%d) ^ %#x", p, reg.name, p-reg.start, mask)
							}
						}
					}
				})
			}
		})
	}
}

// patchable is an uncompressed image with the decoder's view of it, so
// tests can find structures and patch them.
type patchable struct {
	img []byte
	r   *sqfs.Reader
	sb  sqfs.Superblock
}

func newPatchable(t *testing.T, src string, args ...string) *patchable {
	t.Helper()
	_, b := buildSmall(t, src, append([]string{"-noI", "-noD", "-noF", "-noX"}, args...)...)
	r, err := openBytes(t, b, "orig")
	if err != nil {
		t.Fatal(err)
	}
	return &patchable{img: b, r: r, sb: r.Superblock()}
}

// metaPos returns the image position of byte offset of the uncompressed
// metadata table starting at table (block relative to it).
func metaPos(table, block uint64, offset int) uint64 { return table + block + 2 + uint64(offset) }

func (p *patchable) inode(t *testing.T, name string) (*sqfs.Inode, uint64) {
	t.Helper()
	ino := p.r.Root()
	if name != "." {
		var err error
		if ino, err = p.lookup(name); err != nil {
			t.Fatal(err)
		}
	}
	return ino, metaPos(p.sb.InodeTable, ino.Ref>>16, int(ino.Ref&0xffff))
}

func (p *patchable) lookup(name string) (*sqfs.Inode, error) {
	ino := p.r.Root()
	for _, elem := range strings.Split(name, "/") {
		var err error
		if ino, err = p.r.Lookup(ino, elem); err != nil {
			return nil, err
		}
	}
	return ino, nil
}

// listing returns the image position of a directory's listing.
func (p *patchable) listing(t *testing.T, name string) uint64 {
	t.Helper()
	ino, _ := p.inode(t, name)
	blk, off := sqfs.DirListing(ino)
	return metaPos(p.sb.DirectoryTable, uint64(blk), int(off))
}

// TestAbsurdCounts patches counts and sizes to huge values: the decoder
// must report ErrCorrupt without allocating what the values ask for.
func TestAbsurdCounts(t *testing.T) {
	p := newPatchable(t, smallTree(t))
	le := binary.LittleEndian
	u16 := func(off uint64, v uint16) func([]byte) { return func(b []byte) { le.PutUint16(b[off:], v) } }
	u32 := func(off uint64, v uint32) func([]byte) { return func(b []byte) { le.PutUint32(b[off:], v) } }
	u64 := func(off uint64, v uint64) func([]byte) { return func(b []byte) { le.PutUint64(b[off:], v) } }
	root, rootPos := p.inode(t, ".")
	if !root.Extended {
		t.Fatal("root should be an extended directory (it has xattrs)")
	}
	hello, helloPos := p.inode(t, "hello.txt") // extended file: it has xattrs
	if !hello.Extended || hello.Type != sqfs.TypeFile {
		t.Fatalf("hello.txt is %v extended=%v, want an extended file", hello.Type, hello.Extended)
	}
	inner, innerPos := p.inode(t, "sub/inner.txt") // basic file
	if inner.Extended {
		t.Fatal("sub/inner.txt should be a basic file")
	}
	link, linkPos := p.inode(t, "link")
	if link.Type != sqfs.TypeSymlink {
		t.Fatal("link is not a symlink")
	}
	rootList := p.listing(t, ".")
	xattrIDs := le.Uint64(p.img[p.sb.XattrIDTable+16:])
	_ = inner
	tests := []struct {
		name  string
		patch func([]byte)
		// atOpen: Open itself must fail; otherwise walking must fail somewhere.
		atOpen bool
		msg    string // an error must contain this
	}{
		{"inode count", u32(4, ^uint32(0)), true, ""},
		{"id count", u16(26, 0xffff), true, ""},
		{"fragment count", u32(16, ^uint32(0)), true, ""},
		{"xattr id count", u32(p.sb.XattrIDTable+8, ^uint32(0)), true, ""},
		{"bytes used", u64(40, 1<<62), true, ""},
		{"dir header count max", u32(rootList, ^uint32(0)), false, "header count 4294967296"},
		{"dir header count 257", u32(rootList, 256), false, "header count 257"},
		{"dir entry name length", u16(rootList+12+6, 0xffff), false, "name length 65536"},
		{"dir entry name length 257", u16(rootList+12+6, 256), false, "name length 257"},
		{"root listing size", u32(rootPos+16+4, ^uint32(0)), false, ""},
		{"root index count", u16(rootPos+16+16, 0xffff), false, ""},
		{"extended file size 2^63", u64(helloPos+16+8, 1<<63), false, ""},
		{"extended file size 2^64-1", u64(helloPos+16+8, ^uint64(0)), false, ""},
		{"extended file blocks start", u64(helloPos+16, ^uint64(0)), false, ""},
		{"extended file sparse", u64(helloPos+16+16, ^uint64(0)), false, ""},
		{"basic file size", u32(innerPos+16+12, ^uint32(0)), false, ""},
		{"symlink size", u32(linkPos+16+4, ^uint32(0)), false, "target length 4294967295"},
		{"symlink size 4097", u32(linkPos+16+4, 4097), false, "target length 4097"},
		{"xattr count of set 0", u32(metaPos(xattrIDs, 0, 8), ^uint32(0)), false, ""},
	}
	const name = "absurd.sqfs"
	walk := func(b []byte) (openErr error, errs []error) {
		var r *sqfs.Reader
		r, openErr = openBytes(t, b, name)
		if openErr == nil {
			_, errs = inodeResults(r)
			_, more := fsResults(r)
			errs = append(errs, more...)
		}
		return openErr, errs
	}
	// What reading the intact image allocates (ReadFile alone takes a
	// 1 MiB buffer per file).
	base := allocated(func() { walk(p.img) })
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			b := slices.Clone(p.img)
			tc.patch(b)
			var openErr error
			var errs []error
			alloc := allocated(func() { openErr, errs = walk(b) })
			if tc.atOpen {
				if openErr == nil {
					t.Fatal("Open succeeded")
				}
			} else if openErr != nil {
				t.Errorf("Open failed, want the damage found later: %v", openErr)
			}
			if openErr != nil {
				errs = append(errs, openErr)
			}
			if len(errs) == 0 && tc.name != "extended file sparse" {
				t.Error("no error")
			}
			checkErrs(t, errs, name, sqfs.ErrCorrupt)
			if tc.msg != "" && !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), tc.msg) }) {
				t.Errorf("no error mentions %q: %v", tc.msg, errs)
			}
			if alloc > base+2<<20 {
				t.Errorf("allocated %.1f MiB, want < %.1f (the intact image's %.1f + 2)", float64(alloc)/(1<<20), float64(base+2<<20)/(1<<20), float64(base)/(1<<20))
			}
		})
	}
}

// TestUnsupported checks the superblock fields that make an image unreadable.
func TestUnsupported(t *testing.T) {
	img, orig := buildSmall(t, smallTree(t))
	le := binary.LittleEndian
	tests := []struct {
		name  string
		patch func([]byte)
		want  error
		text  string
	}{
		{"compressor 7", func(b []byte) { le.PutUint16(b[20:], 7) }, sqfs.ErrUnsupported, "compressor"},
		{"compressor 0", func(b []byte) { le.PutUint16(b[20:], 0) }, sqfs.ErrUnsupported, "compressor"},
		{"version 3.1", func(b []byte) { le.PutUint16(b[28:], 3); le.PutUint16(b[30:], 1) }, sqfs.ErrUnsupported, "version"},
		{"version 4.1", func(b []byte) { le.PutUint16(b[30:], 1) }, sqfs.ErrUnsupported, "version"},
		{"bad magic", func(b []byte) { copy(b, "sqsh") }, sqfs.ErrCorrupt, "magic"},
		{"zero magic", func(b []byte) { le.PutUint32(b, 0) }, sqfs.ErrCorrupt, "magic"},
		{"block log mismatch", func(b []byte) { le.PutUint16(b[22:], 13) }, sqfs.ErrCorrupt, "block"},
		{"block size 2^31", func(b []byte) { le.PutUint32(b[12:], 1<<31); le.PutUint16(b[22:], 31) }, sqfs.ErrCorrupt, "block"},
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			b := slices.Clone(orig)
			tc.patch(b)
			path := filepath.Join(t.TempDir(), filepath.Base(img))
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := sqfs.Open(path, nil)
			if err == nil {
				r.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("got %v, want an error wrapping %v", err, tc.want)
			}
			if tc.want == sqfs.ErrUnsupported && errors.Is(err, sqfs.ErrCorrupt) {
				t.Errorf("got %v, which also wraps ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q does not name the image %q and %q", err, path, tc.text)
			}
		})
	}
}

// cycleTree is root/{a/c/, b/}; TestCycles re-points a's entry c.
func cycleTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	for _, d := range []string{"a/c", "b"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "b/file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestCycles makes a directory entry point to an ancestor (a cycle), to
// itself, and to a sibling (a directory reached twice): fs.WalkDir must
// terminate, reporting ErrCorrupt for cycles, and Reader.Walk must report
// ErrCorrupt for every directory reached a second time.
func TestCycles(t *testing.T) {
	p := newPatchable(t, cycleTree(t), "-no-xattrs")
	le := binary.LittleEndian
	aList := p.listing(t, "a")
	if got := le.Uint32(p.img[aList:]); got != 0 {
		t.Fatalf("a's listing header count %d, want 0 (one entry)", got)
	}
	if got := string(p.img[aList+12+8 : aList+12+9]); got != "c" {
		t.Fatalf("a's first entry is %q, want c", got)
	}
	tests := []struct {
		target     string
		walkDirErr bool   // fs.WalkDir sees a cycle
		second     string // where Walk reaches a directory again
	}{
		{".", true, "a/c"},
		{"a", true, "a/c"},
		{"b", false, "directory entry b:"}, // a/c is b's first visit
	}
	const name = "cycle.sqfs"
	for _, tc := range tests {
		t.Run("a/c->"+tc.target, func(t *testing.T) {
			target, _ := p.inode(t, tc.target)
			b := slices.Clone(p.img)
			le.PutUint32(b[aList+4:], uint32(target.Ref>>16))     // header: inode block
			le.PutUint32(b[aList+8:], target.Number)              // header: base inode number
			le.PutUint16(b[aList+12:], uint16(target.Ref&0xffff)) // entry: offset
			le.PutUint16(b[aList+12+2:], 0)                       // entry: number delta
			r, err := openBytes(t, b, name)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 2)
			var visited []string
			go func() {
				done <- fs.WalkDir(r, ".", func(path string, d fs.DirEntry, err error) error {
					visited = append(visited, path)
					return err
				})
			}()
			select {
			case err := <-done:
				if tc.walkDirErr {
					if !errors.Is(err, sqfs.ErrCorrupt) {
						t.Errorf("fs.WalkDir: got %v, want ErrCorrupt", err)
					}
				} else if err != nil {
					t.Errorf("fs.WalkDir: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("fs.WalkDir does not terminate")
			}
			var walkErrs []error
			go func() {
				done <- r.Walk(func(path string, ino *sqfs.Inode, err error) error {
					if err != nil {
						walkErrs = append(walkErrs, err)
					}
					return nil
				})
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Walk: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Walk does not terminate")
			}
			if len(walkErrs) != 1 || !errors.Is(walkErrs[0], sqfs.ErrCorrupt) || !strings.Contains(walkErrs[0].Error(), tc.second) {
				t.Errorf("Walk reported %v, want one ErrCorrupt naming %q", walkErrs, tc.second)
			}
		})
	}
}

// TestShortenedFragment drops the last bytes (zlib's adler32 trailer) of a
// compressed fragment block by shrinking its size in the fragment table:
// the block still inflates, but unverified, so reading must fail.
func TestShortenedFragment(t *testing.T) {
	img, orig := buildSmall(t, smallTree(t), "-comp", "gzip", "-noI")
	le := binary.LittleEndian
	fragTable := le.Uint64(orig[80:])
	entry := le.Uint64(orig[fragTable:]) + 2 // uncompressed metadata block: entry 0
	word := le.Uint32(orig[entry+8:])
	if word&(1<<24) != 0 {
		t.Fatal("fragment 0 is stored uncompressed")
	}
	for _, cut := range []uint32{1, 4} {
		t.Run(fmt.Sprint("cut", cut), func(t *testing.T) {
			b := slices.Clone(orig)
			le.PutUint32(b[entry+8:], word-cut)
			path := filepath.Join(t.TempDir(), filepath.Base(img))
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := sqfs.Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := r.ReadFile("hello.txt")
			if !errors.Is(err, sqfs.ErrCorrupt) {
				t.Errorf("ReadFile = %q, %v; want ErrCorrupt", got, err)
			}
		})
	}
}
