package flate

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	stdadler "hash/adler32"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	kpzlib "github.com/klauspost/compress/zlib"
)

type dataset struct {
	name string
	data []byte
}

func datasets(t testing.TB) []dataset {
	var ds []dataset
	for _, n := range []int{0, 1, 100, 4096, 131072, 1048576} {
		ds = append(ds,
			dataset{fmt.Sprintf("random-%d", n), randomData(n, int64(n))},
			dataset{fmt.Sprintf("text-%d", n), textData(n)},
			dataset{fmt.Sprintf("zeros-%d", n), make([]byte, n)},
		)
	}
	elf := elfData(t)
	for _, n := range []int{4096, 131072, 1048576} {
		for i, off := range []int{0, len(elf) / 3, len(elf) - n} {
			if off >= 0 && off+n <= len(elf) {
				ds = append(ds, dataset{fmt.Sprintf("elf-%d-%d", n, i), elf[off : off+n]})
			}
		}
	}
	return ds
}

// roundTrip checks one compressed stream of data: exact-size buffer, a
// larger buffer, and a buffer one byte too small.
func roundTrip(t *testing.T, data, z []byte, zlib bool) {
	t.Helper()
	dec := DecompressRaw
	if zlib {
		dec = Decompress
	}
	dst := make([]byte, len(data))
	n, err := dec(dst, z)
	if err != nil || n != len(data) || !bytes.Equal(dst, data) {
		t.Fatalf("exact buffer: n=%d err=%v equal=%v", n, err, bytes.Equal(dst[:n], data))
	}
	big := make([]byte, len(data)+300)
	n, err = dec(big, z)
	if err != nil || n != len(data) || !bytes.Equal(big[:n], data) {
		t.Fatalf("large buffer: n=%d err=%v", n, err)
	}
	if len(data) > 0 {
		n, err = dec(dst[:len(data)-1], z)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("buffer one byte short: n=%d err=%v", n, err)
		}
	}
}

func TestRoundTripStdlib(t *testing.T) {
	for _, d := range datasets(t) {
		t.Run(d.name, func(t *testing.T) {
			for level := -2; level <= 9; level++ {
				roundTrip(t, d.data, stdZlib(t, d.data, level), true)
				roundTrip(t, d.data, stdRaw(t, d.data, level), false)
			}
		})
	}
}

func TestRoundTripKlauspost(t *testing.T) {
	for _, d := range datasets(t) {
		t.Run(d.name, func(t *testing.T) {
			for _, level := range []int{-2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9} {
				roundTrip(t, d.data, kpZlib(t, d.data, level), true)
				roundTrip(t, d.data, kpRaw(t, d.data, level), false)
			}
		})
	}
}

// gzipToRaw strips the RFC 1952 header and trailer.
func gzipToRaw(t *testing.T, gz []byte) []byte {
	if len(gz) < 18 || gz[0] != 0x1f || gz[1] != 0x8b || gz[2] != 8 {
		t.Fatalf("not gzip")
	}
	flg := gz[3]
	p := 10
	if flg&4 != 0 {
		p += 2 + int(binary.LittleEndian.Uint16(gz[p:]))
	}
	for _, f := range []byte{8, 16} {
		if flg&f != 0 {
			p += bytes.IndexByte(gz[p:], 0) + 1
		}
	}
	if flg&2 != 0 {
		p += 2
	}
	return gz[p : len(gz)-8]
}

func runTool(t *testing.T, data []byte, name string, args ...string) []byte {
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return out
}

func TestGzipTool(t *testing.T) {
	if _, err := exec.LookPath("gzip"); err != nil {
		t.Skip("gzip not installed")
	}
	for _, d := range datasets(t) {
		if len(d.data) > 131072 && d.name[:3] != "elf" {
			continue
		}
		for _, level := range []string{"-1", "-6", "-9"} {
			gz := runTool(t, d.data, "gzip", "-c", "-n", level)
			raw := gzipToRaw(t, gz)
			t.Run(d.name+level, func(t *testing.T) { roundTrip(t, d.data, raw, false) })
		}
	}
}

func TestPigzTool(t *testing.T) {
	if _, err := exec.LookPath("pigz"); err != nil {
		t.Skip("pigz not installed")
	}
	for _, d := range datasets(t) {
		for _, level := range []string{"-1", "-6", "-9", "-11"} {
			z := runTool(t, d.data, "pigz", "-z", "-c", level)
			t.Run(d.name+level, func(t *testing.T) { roundTrip(t, d.data, z, true) })
		}
	}
}

// TestMksquashfs builds a gzip squashfs image and checks that every data
// block and every inode-table metadata block decodes equal to what
// klauspost/compress/zlib gives.
func TestMksquashfs(t *testing.T) {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skip("mksquashfs not installed")
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "sub"), 0o755)
	os.WriteFile(filepath.Join(tree, "text"), textData(3<<20/2), 0o644)
	os.WriteFile(filepath.Join(tree, "zeros"), make([]byte, 300000), 0o644)
	if elf, err := os.ReadFile("/usr/local/go/bin/go"); err == nil {
		os.WriteFile(filepath.Join(tree, "sub", "elf"), elf[:2<<20], 0o644)
	}
	for i := 0; i < 50; i++ {
		os.WriteFile(filepath.Join(tree, "sub", fmt.Sprintf("small%d", i)), textData(100+i*97), 0o644)
	}
	img := filepath.Join(dir, "img.sqfs")
	for _, bs := range []string{"131072", "1048576"} {
		out, err := exec.Command("mksquashfs", tree, img, "-comp", "gzip", "-b", bs, "-noappend", "-no-progress", "-quiet").CombinedOutput()
		if err != nil {
			t.Fatalf("mksquashfs: %v\n%s", err, out)
		}
		image, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		blockSize := int(binary.LittleEndian.Uint32(image[12:]))
		inodeStart := int(binary.LittleEndian.Uint64(image[64:]))
		dirStart := int(binary.LittleEndian.Uint64(image[72:]))
		ref := func(z []byte, max int) ([]byte, int, error) {
			br := bytes.NewReader(z)
			zr, err := kpzlib.NewReader(br)
			if err != nil {
				return nil, 0, err
			}
			want, err := io.ReadAll(io.LimitReader(zr, int64(max)+1))
			return want, len(z) - br.Len(), err
		}
		dst := make([]byte, blockSize)
		blocks := 0
		for pos := 96; pos < inodeStart; {
			want, used, err := ref(image[pos:inodeStart], blockSize)
			if err != nil {
				t.Logf("stopping at offset %d (uncompressed block?): %v", pos, err)
				break
			}
			n, err := Decompress(dst, image[pos:pos+used])
			if err != nil || !bytes.Equal(dst[:n], want) {
				t.Fatalf("data block at %d: n=%d err=%v", pos, n, err)
			}
			pos += used
			blocks++
		}
		meta := 0
		for pos := inodeStart; pos+2 <= dirStart; {
			hdr := int(binary.LittleEndian.Uint16(image[pos:]))
			pos += 2
			size := hdr & 0x7fff
			if hdr&0x8000 == 0 {
				want, _, err := ref(image[pos:pos+size], 8192)
				if err != nil {
					t.Fatal(err)
				}
				n, err := Decompress(dst[:8192], image[pos:pos+size])
				if err != nil || !bytes.Equal(dst[:n], want) {
					t.Fatalf("metadata block at %d: n=%d err=%v", pos, n, err)
				}
				meta++
			}
			pos += size
		}
		t.Logf("block size %d: %d data blocks, %d metadata blocks verified", blockSize, blocks, meta)
		if blocks < 5 {
			t.Fatalf("only %d data blocks verified", blocks)
		}
	}
}

// --- hand-built edge cases -----------------------------------------------

func zlibWrap(raw, data []byte) []byte {
	z := append([]byte{0x78, 0x9c}, raw...)
	return binary.BigEndian.AppendUint32(z, stdadler.Checksum(data))
}

func storedBlock(w *bitWriter, final bool, data []byte) {
	f := uint64(0)
	if final {
		f = 1
	}
	w.bits(f, 1)
	w.bits(0, 2)
	w.align()
	w.bits(uint64(len(data)), 16)
	w.bits(uint64(^uint16(len(data))), 16)
	w.out = append(w.out, data...)
}

type edgeCase struct {
	name string
	raw  []byte
	want []byte // nil: must fail
}

func edgeCases() []edgeCase {
	var cases []edgeCase
	add := func(name string, want []byte, build func(w *bitWriter)) {
		w := &bitWriter{}
		build(w)
		cases = append(cases, edgeCase{name, w.bytes(), want})
	}
	rnd := randomData(70000, 42)

	add("stored-len0", []byte{}, func(w *bitWriter) { storedBlock(w, true, nil) })
	add("stored-len65535", rnd[:65535], func(w *bitWriter) { storedBlock(w, true, rnd[:65535]) })
	add("stored-len0-then-stored", rnd[:10], func(w *bitWriter) {
		storedBlock(w, false, nil)
		storedBlock(w, true, rnd[:10])
	})
	add("stored-bad-nlen", nil, func(w *bitWriter) {
		w.bits(1, 3)
		w.align()
		w.bits(5, 16)
		w.bits(5, 16)
		w.out = append(w.out, 1, 2, 3, 4, 5)
	})
	add("fixed-hello", []byte("hello hello hello!"), func(w *bitWriter) {
		w.bits(1, 1)
		w.bits(1, 2)
		h := newHuff(w, fixedLitLens, fixedDistLens)
		for _, c := range []byte("hello ") {
			h.lit(c)
		}
		h.match(11, 6)
		h.lit('!')
		h.eob()
	})
	add("fixed-empty", []byte{}, func(w *bitWriter) {
		w.bits(1, 1)
		w.bits(1, 2)
		newHuff(w, fixedLitLens, fixedDistLens).eob()
	})
	add("fixed-len258-dist1", append([]byte{'a'}, bytes.Repeat([]byte{'a'}, 258*5)...), func(w *bitWriter) {
		w.bits(1, 1)
		w.bits(1, 2)
		h := newHuff(w, fixedLitLens, fixedDistLens)
		h.lit('a')
		for i := 0; i < 5; i++ {
			h.match(258, 1)
		}
		h.eob()
	})
	for dist := 2; dist <= 9; dist++ {
		want := append([]byte{}, rnd[:dist]...)
		for len(want) < dist+258+37 {
			want = append(want, want[len(want)-dist])
		}
		add(fmt.Sprintf("fixed-short-dist%d", dist), want, func(w *bitWriter) {
			w.bits(1, 1)
			w.bits(1, 2)
			h := newHuff(w, fixedLitLens, fixedDistLens)
			for _, c := range rnd[:dist] {
				h.lit(c)
			}
			h.match(258, dist)
			h.match(37, dist)
			h.eob()
		})
	}
	add("dist32768-len258", append(append([]byte{}, rnd[:32768]...), rnd[:258]...), func(w *bitWriter) {
		storedBlock(w, false, rnd[:32768])
		w.bits(1, 1)
		w.bits(1, 2)
		h := newHuff(w, fixedLitLens, fixedDistLens)
		h.match(258, 32768)
		h.eob()
	})
	add("dist-too-far", nil, func(w *bitWriter) {
		w.bits(1, 1)
		w.bits(1, 2)
		h := newHuff(w, fixedLitLens, fixedDistLens)
		h.lit('x')
		h.match(3, 2)
		h.eob()
	})
	add("fixed-dist-symbol-30", nil, func(w *bitWriter) {
		w.bits(1, 1)
		w.bits(1, 2)
		h := newHuff(w, fixedLitLens, fixedDistLens)
		h.lit('x')
		w.code(h.litCodes[257], 7)
		w.code(h.distCode[30], 5)
		h.eob()
	})
	add("fixed-litlen-symbol-286", nil, func(w *bitWriter) {
		w.bits(1, 1)
		w.bits(1, 2)
		h := newHuff(w, fixedLitLens, fixedDistLens)
		h.lit('x')
		w.code(h.litCodes[286], 8)
		h.eob()
	})
	add("block-type-3", nil, func(w *bitWriter) { w.bits(7, 3) })

	// Dynamic blocks: literals in 9 bits, EOB in 2, lengths 3-9 and 258
	// (symbols 257-263 and 285) in 5 bits.
	litLens := make([]uint8, 286)
	for i := 0; i < 256; i++ {
		litLens[i] = 9
	}
	litLens[256] = 2
	for s := 257; s <= 263; s++ {
		litLens[s] = 5
	}
	litLens[285] = 5
	for _, dsym := range []int{0, 5, 29} {
		distLens := make([]uint8, 30)
		distLens[dsym] = 1 // a single distance code, as zlib allows
		dist := distBaseT[dsym]
		want := append([]byte{}, rnd[:dist]...)
		for i := 0; i < 258+3; i++ {
			want = append(want, want[len(want)-dist])
		}
		add(fmt.Sprintf("dynamic-single-dist-code-%d", dsym), want, func(w *bitWriter) {
			w.bits(1, 1)
			w.bits(2, 2)
			dynamicHeader(w, litLens, distLens)
			h := newHuff(w, litLens, distLens)
			for _, c := range rnd[:dist] {
				h.lit(c)
			}
			h.match(258, dist)
			h.match(3, dist)
			h.eob()
		})
		add(fmt.Sprintf("dynamic-single-dist-code-%d-uses-code-1", dsym), nil, func(w *bitWriter) {
			w.bits(1, 1)
			w.bits(2, 2)
			dynamicHeader(w, litLens, distLens)
			h := newHuff(w, litLens, distLens)
			for _, c := range rnd[:dist] {
				h.lit(c)
			}
			w.code(h.litCodes[257], 5)
			w.bits(1, 1) // the unused codeword
			h.eob()
		})
	}
	add("dynamic-no-distance-codes", []byte("abc"), func(w *bitWriter) {
		w.bits(1, 1)
		w.bits(2, 2)
		distLens := make([]uint8, 1)
		dynamicHeader(w, litLens, distLens)
		h := newHuff(w, litLens, distLens)
		h.lit('a')
		h.lit('b')
		h.lit('c')
		h.eob()
	})
	add("dynamic-no-distance-codes-used", nil, func(w *bitWriter) {
		w.bits(1, 1)
		w.bits(2, 2)
		distLens := make([]uint8, 1)
		dynamicHeader(w, litLens, distLens)
		h := newHuff(w, litLens, distLens)
		h.lit('a')
		w.code(h.litCodes[257], 5)
		w.bits(0, 8)
		h.eob()
	})
	add("dynamic-oversubscribed-litlen", nil, func(w *bitWriter) {
		w.bits(1, 1)
		w.bits(2, 2)
		bad := append([]uint8{}, litLens...)
		bad[284] = 5
		dynamicHeader(w, bad, []uint8{1, 1})
		w.bits(0, 32)
	})
	add("dynamic-incomplete-litlen", nil, func(w *bitWriter) {
		w.bits(1, 1)
		w.bits(2, 2)
		bad := append([]uint8{}, litLens...)
		bad[285] = 0
		dynamicHeader(w, bad, []uint8{1, 1})
		w.bits(0, 32)
	})
	add("dynamic-incomplete-dist", nil, func(w *bitWriter) {
		w.bits(1, 1)
		w.bits(2, 2)
		dynamicHeader(w, litLens, []uint8{2, 2, 2})
		w.bits(0, 32)
	})
	add("dynamic-missing-eob", nil, func(w *bitWriter) {
		w.bits(1, 1)
		w.bits(2, 2)
		bad := append([]uint8{}, litLens...)
		bad[256] = 0
		bad[264] = 5
		bad[265] = 5
		bad[266] = 5
		bad[267] = 5
		dynamicHeader(w, bad, []uint8{1, 1})
		w.bits(0, 32)
	})
	// Long codewords exercise the subtables: 15-bit literals.
	long := make([]uint8, 286)
	{
		// Kraft: 1/2 + 1/4 + ... 1/2^14 + 2/2^15 = 1. Symbols: 'a'..'n' at
		// 1..14 bits, then EOB and 'z' at 15 bits.
		for i := 0; i < 14; i++ {
			long['a'+i] = uint8(i + 1)
		}
		long[256] = 15
		long['z'] = 15
	}
	add("dynamic-15-bit-codes", []byte("zabcdefghijklmnz"), func(w *bitWriter) {
		w.bits(1, 1)
		w.bits(2, 2)
		dynamicHeader(w, long, []uint8{0})
		h := newHuff(w, long, []uint8{0})
		for _, c := range []byte("zabcdefghijklmnz") {
			h.lit(c)
		}
		h.eob()
	})
	return cases
}

func TestEdgeCases(t *testing.T) {
	for _, c := range edgeCases() {
		t.Run(c.name, func(t *testing.T) {
			for _, zlib := range []bool{false, true} {
				src := c.raw
				dec := DecompressRaw
				if zlib {
					src = zlibWrap(c.raw, c.want)
					dec = Decompress
				}
				dst := make([]byte, len(c.want)+1000)
				n, err := dec(dst, src)
				if c.want == nil {
					if !errors.Is(err, ErrCorrupt) {
						t.Fatalf("zlib=%v: got n=%d err=%v, want ErrCorrupt", zlib, n, err)
					}
				} else {
					if err != nil || !bytes.Equal(dst[:n], c.want) {
						t.Fatalf("zlib=%v: got n=%d err=%v, want %d bytes", zlib, n, err, len(c.want))
					}
					roundTrip(t, c.want, src, zlib)
				}
				check(t, src, zlib, len(c.want)+1000)
			}
		})
	}
}

// TestEOBPositions puts end-of-block codes at every bit offset, after
// literals and after matches, in non-final and final blocks, with the end
// of the output and of the input at every distance from the fast loop's
// limits.
func TestEOBPositions(t *testing.T) {
	rnd := randomData(1000, 7)
	for pre9 := 0; pre9 < 8; pre9++ {
		for nlit := 0; nlit < 300; nlit += 1 + nlit/20 {
			for _, withMatch := range []bool{false, true} {
				for _, blocks := range []int{1, 2, 3} {
					w := &bitWriter{}
					var want []byte
					for b := 0; b < blocks; b++ {
						final := uint64(0)
						if b == blocks-1 {
							final = 1
						}
						w.bits(final, 1)
						w.bits(1, 2)
						h := newHuff(w, fixedLitLens, fixedDistLens)
						for i := 0; i < pre9; i++ {
							h.lit(200)
							want = append(want, 200)
						}
						for i := 0; i < nlit; i++ {
							c := rnd[i] & 127
							h.lit(c)
							want = append(want, c)
						}
						if withMatch && len(want) > 0 {
							h.match(10+nlit%249, 1)
							for i := 0; i < 10+nlit%249; i++ {
								want = append(want, want[len(want)-1])
							}
						}
						h.eob()
					}
					raw := w.bytes()
					for _, zlib := range []bool{false, true} {
						src := raw
						if zlib {
							src = zlibWrap(raw, want)
						}
						roundTrip(t, want, src, zlib)
						check(t, src, zlib, len(want)+5)
					}
				}
			}
		}
	}
}

// --- corruption ----------------------------------------------------------

func smallStreams(t testing.TB) [][]byte {
	var s [][]byte
	txt := textData(3000)
	for _, level := range []int{-2, 0, 1, 6, 9} {
		s = append(s, stdZlib(t, txt[:300], level), stdZlib(t, txt, level))
	}
	s = append(s, stdZlib(t, nil, 9), stdZlib(t, randomData(200, 3), 9))
	for _, c := range edgeCases() {
		if c.want != nil && len(c.raw) < 5000 {
			s = append(s, zlibWrap(c.raw, c.want))
		}
	}
	return s
}

func TestTruncation(t *testing.T) {
	for _, z := range smallStreams(t) {
		dst := make([]byte, 1<<16)
		for n := 0; n < len(z); n++ {
			if _, err := Decompress(dst, z[:n]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("zlib stream of %d bytes truncated to %d: err=%v", len(z), n, err)
			}
			raw := z[2 : len(z)-4]
			if n < len(raw) {
				if _, err := DecompressRaw(dst, raw[:n]); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("raw stream of %d bytes truncated to %d: err=%v", len(raw), n, err)
				}
			}
		}
	}
}

func TestTrailingGarbage(t *testing.T) {
	for _, z := range smallStreams(t) {
		dst := make([]byte, 1<<16)
		if _, err := Decompress(dst, append(z[:len(z):len(z)], 0)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("zlib with trailing byte: err=%v", err)
		}
		raw := z[2 : len(z)-4 : len(z)-4]
		if _, err := DecompressRaw(dst, append(raw, 0)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("raw with trailing byte: err=%v", err)
		}
	}
}

func TestBadAdler(t *testing.T) {
	for _, z := range smallStreams(t) {
		dst := make([]byte, 1<<16)
		for bit := 0; bit < 32; bit++ {
			b := append([]byte{}, z...)
			b[len(b)-4+bit/8] ^= 1 << (bit % 8)
			if _, err := Decompress(dst, b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("flipped adler bit %d: err=%v", bit, err)
			}
		}
	}
}

func TestZlibHeader(t *testing.T) {
	z := stdZlib(t, []byte("hello"), 6)
	dst := make([]byte, 100)
	for _, h := range [][2]byte{
		{0x78, 0x9c}, {0x78, 0x01}, {0x78, 0xda}, {0x08, 0x1d}, // valid: CINFO 7 and 0
	} {
		b := append([]byte{h[0], h[1]}, z[2:]...)
		if n, err := Decompress(dst, b); err != nil || string(dst[:n]) != "hello" {
			t.Fatalf("header %x: %v", h, err)
		}
	}
	for _, h := range [][2]byte{
		{0x78, 0x9d}, // FCHECK
		{0x88, 0x98}, // CINFO 8 (FCHECK ok)
		{0x79, 0x18}, // CM 9 (FCHECK ok)
		{0x78, 0xbb}, // FDICT
	} {
		b := append([]byte{h[0], h[1]}, z[2:]...)
		if _, err := Decompress(dst, b); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("header %x accepted", h)
		}
		check(t, b, true, 100)
	}
	for n := 0; n < 2; n++ {
		if _, err := Decompress(dst, z[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatal("short header accepted")
		}
	}
}

// TestRandomFlips corrupts many streams and compares against the standard
// library: never a panic, and the same verdict and output.
func TestRandomFlips(t *testing.T) {
	r := rand.New(rand.NewSource(99))
	var streams [][]byte
	streams = append(streams, smallStreams(t)...)
	txt := textData(40000)
	for _, level := range []int{1, 5, 9, -2} {
		streams = append(streams, stdZlib(t, txt[:20000+level*1000], level))
	}
	iters := 20000
	if testing.Short() {
		iters = 2000
	}
	for i := 0; i < iters; i++ {
		z := append([]byte{}, streams[r.Intn(len(streams))]...)
		for k := 1 + r.Intn(3); k > 0; k-- {
			z[r.Intn(len(z))] ^= byte(1 << r.Intn(8))
		}
		check(t, z, true, 50000)
		check(t, z[2:len(z)-4], false, 50000)
		check(t, z[2:len(z)-4], false, 1000)
	}
}

// TestRandomStreams feeds random bytes (with a plausible block header) to
// the raw decoder.
func TestRandomStreams(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	for i := 0; i < 20000; i++ {
		b := make([]byte, 1+r.Intn(300))
		r.Read(b)
		b[0] = b[0]&^6 | byte(r.Intn(3))<<1
		check(t, b, false, 4096)
	}
}

// --- API properties ------------------------------------------------------

func TestAllocs(t *testing.T) {
	data := textData(1 << 20)
	z := stdZlib(t, data, 9)
	dst := make([]byte, len(data))
	Decompress(dst, z)
	if a := testing.AllocsPerRun(20, func() { Decompress(dst, z) }); a != 0 {
		t.Fatalf("%v allocations per call", a)
	}
	bad := append([]byte{}, z...)
	bad[len(bad)-1] ^= 1
	if a := testing.AllocsPerRun(20, func() { Decompress(dst, bad) }); a != 0 {
		t.Fatalf("%v allocations per failing call", a)
	}
}

func TestConcurrent(t *testing.T) {
	var streams [][]byte
	var datas [][]byte
	for i, n := range []int{1000, 50000, 200000} {
		d := textData(n)
		if i == 1 {
			d = randomData(n, 1)
		}
		datas = append(datas, d)
		streams = append(streams, stdZlib(t, d, 6))
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]byte, 200000)
			for i := 0; i < 50; i++ {
				k := (g + i) % len(streams)
				n, err := Decompress(dst, streams[k])
				if err != nil || !bytes.Equal(dst[:n], datas[k]) {
					t.Errorf("goroutine %d: n=%d err=%v", g, n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestAdler32(t *testing.T) {
	data := randomData(100000, 11)
	for i := range data[:50000] {
		data[i] = 0xff // worst case for overflow
	}
	r := rand.New(rand.NewSource(12))
	for i := 0; i < 2000; i++ {
		a, b := r.Intn(20000), r.Intn(20000)
		off := r.Intn(len(data) - a - b)
		p := data[off : off+a+b]
		if got, want := adler32(adler32(1, p[:a]), p[a:]), stdadler.Checksum(p); got != want {
			t.Fatalf("split %d+%d at %d: %08x want %08x", a, b, off, got, want)
		}
	}
	for _, n := range []int{0, 1, 15, 16, 17, 127, 128, 129, 5503, 5504, 5505, 5551, 5552, 5553, 11104, 50000, 100000} {
		for _, off := range []int{0, 1, 49990} {
			if off+n > len(data) {
				continue
			}
			p := data[off : off+n]
			if got, want := adler32(1, p), stdadler.Checksum(p); got != want {
				t.Fatalf("n=%d off=%d: %08x want %08x", n, off, got, want)
			}
		}
	}
}

var _ = flate.NewReader
