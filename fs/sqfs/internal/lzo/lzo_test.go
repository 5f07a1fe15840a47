package lzo

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
)

// ---- test inputs ---------------------------------------------------------

var (
	textOnce   sync.Once
	textCorpus []byte
)

// text returns n bytes of real text: Go standard library sources, padded
// with generated prose if GOROOT is unavailable.
func text(n int) []byte {
	textOnce.Do(func() {
		var buf bytes.Buffer
		files, _ := filepath.Glob(filepath.Join(runtime.GOROOT(), "src", "net", "http", "*.go"))
		sort.Strings(files)
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil {
				buf.Write(b)
			}
			if buf.Len() > 4<<20 {
				break
			}
		}
		words := strings.Fields("the quick brown fox jumps over a lazy dog while squashfs " +
			"blocks are compressed with lzo and decoded by the kernel or by this package " +
			"into pages of memory for every reader of the file system image")
		r := rand.New(rand.NewSource(1))
		for buf.Len() < 4<<20 {
			buf.WriteString(words[r.Intn(len(words))])
			if r.Intn(12) == 0 {
				buf.WriteString(".\n")
			} else {
				buf.WriteByte(' ')
			}
		}
		textCorpus = buf.Bytes()
	})
	return textCorpus[:n:n]
}

func random(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// mixed interleaves text, incompressible runs of various lengths (long
// literal runs), long repeats (long matches), short-period patterns
// (overlapping matches) and zero runs, to exercise every instruction form.
func mixed(n int) []byte {
	r := rand.New(rand.NewSource(7))
	var b []byte
	t := text(1 << 20)
	for len(b) < n {
		switch r.Intn(6) {
		case 0:
			k := r.Intn(4000) + 1
			x := make([]byte, k)
			r.Read(x)
			b = append(b, x...)
		case 1:
			off := r.Intn(len(t) - 5000)
			b = append(b, t[off:off+r.Intn(5000)]...)
		case 2:
			if len(b) > 70000 {
				off := len(b) - r.Intn(70000) - 1
				k := r.Intn(3000) + 3
				if off+k > len(b) {
					k = len(b) - off
				}
				b = append(b, b[off:off+k]...)
			}
		case 3:
			period := r.Intn(9) + 1
			pat := make([]byte, period)
			r.Read(pat)
			for k := r.Intn(2000) + 1; k > 0; k-- {
				b = append(b, pat[k%period])
			}
		case 4:
			b = append(b, make([]byte, r.Intn(3000))...)
		case 5:
			// Sparse-ish binary records: repeated structure with small changes.
			for k := r.Intn(50); k > 0; k-- {
				b = append(b, byte(k), 0, 0, 0, byte(r.Intn(4)), 0x7f, 'E', 'L', 'F', byte(r.Intn(256)))
			}
		}
	}
	return b[:n]
}

type input struct {
	name string
	data []byte
}

func inputs(tb testing.TB) []input {
	var in []input
	for _, n := range []int{0, 1, 4096, 131072, 262144} {
		in = append(in,
			input{fmt.Sprintf("random/%d", n), random(n, int64(n))},
			input{fmt.Sprintf("text/%d", n), text(n)},
			input{fmt.Sprintf("zeros/%d", n), make([]byte, n)},
			input{fmt.Sprintf("mixed/%d", n), mixed(n)},
		)
		elf := goBinary(tb, n)
		in = append(in, input{fmt.Sprintf("elf/%d", n), elf})
	}
	in = append(in, input{"elf/3MiB", goBinary(tb, 3<<20)})
	in = append(in, input{"mixed/1MiB", mixed(1 << 20)})
	return in
}

// ---- real data from lzop ---------------------------------------------------

func TestLzopRoundTrip(t *testing.T) {
	lzopPath(t)
	for _, level := range []string{"-1", "-5", "-9"} {
		for _, in := range inputs(t) {
			t.Run(level+"/"+in.name, func(t *testing.T) {
				t.Parallel()
				file := lzopCompress(t, level, in.data)
				got, nc := decodeLzop(t, file)
				if !bytes.Equal(got, in.data) {
					t.Fatalf("decoded %d bytes differ from the %d-byte input", len(got), len(in.data))
				}
				// Everything compressible of a useful size must have gone
				// through the decoder, not been stored.
				if len(in.data) >= 4096 && !strings.HasPrefix(in.name, "random") && in.name != "mixed/4096" && nc == 0 {
					t.Fatalf("no compressed blocks: decoder not exercised")
				}
			})
		}
	}
}

// TestLzopExactAndLargerBuffers checks that decoding works with a larger
// destination and fails, wrapping ErrCorrupt, with any smaller one.
func TestOutputBufferTooSmall(t *testing.T) {
	for _, level := range []string{"-1", "-9"} {
		for _, in := range []input{{"text", text(20000)}, {"mixed", mixed(50000)}, {"zeros", make([]byte, 70000)}} {
			blocks := compressedBlocks(t, lzopCompress(t, level, in.data))
			if len(blocks) != 1 {
				t.Fatalf("%s %s: want 1 compressed block, got %d", level, in.name, len(blocks))
			}
			blk := blocks[0]
			big := make([]byte, blk.ulen+1000)
			n, err := Decompress(big, blk.data)
			if err != nil || n != blk.ulen || !bytes.Equal(big[:n], in.data) {
				t.Fatalf("%s %s: larger buffer: n=%d err=%v", level, in.name, n, err)
			}
			sizes := []int{0, 1, 2, 3, 17, 100, blk.ulen / 2, blk.ulen - 3, blk.ulen - 2, blk.ulen - 1}
			for _, sz := range sizes {
				dst := make([]byte, sz)
				n, err := Decompress(dst, blk.data)
				if err == nil {
					t.Fatalf("%s %s: dst of %d/%d bytes: no error (n=%d)", level, in.name, sz, blk.ulen, n)
				}
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("%s %s: error %v does not wrap ErrCorrupt", level, in.name, err)
				}
				if n > sz || !bytes.Equal(dst[:n], in.data[:n]) {
					t.Fatalf("%s %s: partial output n=%d wrong", level, in.name, n)
				}
			}
		}
	}
}

// ---- squashfs images made by mksquashfs -----------------------------------

func TestMksquashfs(t *testing.T) {
	mk := mksquashfsPath(t)
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	files := map[string][]byte{
		"a/text.txt":     text(300000),
		"a/random.bin":   random(200000, 99),
		"a/zeros.bin":    make([]byte, 150000),
		"b/go-elf":       goBinary(t, 1<<20),
		"b/small.txt":    text(100)[:100:100],
		"b/c/mixed.bin":  mixed(400000),
		"b/c/tiny":       []byte("x"),
		"b/c/empty":      nil,
		"b/c/period.bin": bytes.Repeat([]byte("abc"), 50000),
	}
	want := map[string]bool{}
	for name, data := range files {
		p := filepath.Join(tree, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		want[string(data)] = true
	}
	for _, extra := range [][]string{
		nil, // default: lzo1x_999 level 8, no compressor options stored
		{"-Xalgorithm", "lzo1x_1"},
		{"-Xalgorithm", "lzo1x_999", "-Xcompression-level", "9", "-b", "64K"},
		{"-Xalgorithm", "lzo1x_1_15", "-b", "1M"},
	} {
		t.Run(strings.Join(append([]string{"lzo"}, extra...), " "), func(t *testing.T) {
			img := filepath.Join(dir, "img.sqfs")
			args := append([]string{tree, img, "-comp", "lzo", "-noappend", "-no-fragments",
				"-no-xattrs", "-no-duplicates", "-no-progress", "-processors", "1"}, extra...)
			if out, err := runCmd(mk, args...); err != nil {
				t.Fatalf("mksquashfs %v: %v\n%s", args, err, out)
			}
			b, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			got := decodeSquashfs(t, b)
			if len(got) != len(files)-1 { // "empty" has no blocks but is still a file
				if len(got) != len(files) {
					t.Fatalf("found %d files in image, want %d", len(got), len(files))
				}
			}
			for _, g := range got {
				if !want[string(g)] {
					t.Fatalf("decoded a %d-byte file that matches no input file", len(g))
				}
			}
		})
	}
}

// ---- corrupt input ----------------------------------------------------------

// smallStreams returns a few real compressed blocks from lzop -1 and -9.
func smallStreams(t testing.TB) []lzopBlock {
	var r []lzopBlock
	for _, level := range []string{"-1", "-9"} {
		for _, d := range [][]byte{text(3000), mixed(6000), make([]byte, 5000), bytes.Repeat([]byte("ab"), 700)} {
			r = append(r, compressedBlocks(t, lzopCompress(t, level, d))...)
		}
	}
	return r
}

func TestTruncated(t *testing.T) {
	for i, blk := range smallStreams(t) {
		dst := make([]byte, blk.ulen)
		for l := 0; l < len(blk.data); l++ {
			n, err := Decompress(dst, blk.data[:l])
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("stream %d truncated to %d/%d: n=%d err=%v, want ErrCorrupt", i, l, len(blk.data), n, err)
			}
		}
		// Trailing garbage after the end marker is also an error.
		_, err := Decompress(dst, append(bytes.Clone(blk.data), 0))
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("stream %d with trailing byte: err=%v", i, err)
		}
	}
}

func TestBitFlips(t *testing.T) {
	r := rand.New(rand.NewSource(42))
	iters := 20000
	if testing.Short() {
		iters = 2000
	}
	streams := smallStreams(t)
	for k := 0; k < iters; k++ {
		blk := streams[r.Intn(len(streams))]
		src := bytes.Clone(blk.data)
		for f := r.Intn(4) + 1; f > 0; f-- {
			switch r.Intn(3) {
			case 0:
				src[r.Intn(len(src))] ^= 1 << r.Intn(8)
			case 1:
				src[r.Intn(len(src))] = byte(r.Intn(256))
			case 2:
				src[r.Intn(len(src))] = 0
			}
		}
		dst := make([]byte, blk.ulen+r.Intn(64))
		checkDecode(t, dst, src)
	}
}

// checkDecode runs Decompress and checks the invariants that hold for any
// input: no panic, n within dst, errors wrap ErrCorrupt, the result does not
// depend on spare room in dst, and a successful decode needs all n bytes.
func checkDecode(t testing.TB, dst, src []byte) {
	t.Helper()
	n, err := Decompress(dst, src)
	if n < 0 || n > len(dst) {
		t.Fatalf("n=%d outside dst of %d", n, len(dst))
	}
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v does not wrap ErrCorrupt", err)
		}
		return
	}
	out := bytes.Clone(dst[:n])
	exact := make([]byte, n)
	if m, err := Decompress(exact, src); err != nil || m != n || !bytes.Equal(exact, out) {
		t.Fatalf("exact-size redecode: n=%d err=%v (first: n=%d)", m, err, n)
	}
	if n > 0 {
		if _, err := Decompress(exact[:n-1], src); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("decode into %d bytes of %d: err=%v", n-1, n, err)
		}
	}
}

func TestHandmade(t *testing.T) {
	eof := []byte{0x11, 0, 0}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	zeros := func(n int) []byte { return make([]byte, n) }
	tests := []struct {
		name string
		src  []byte
		dst  int
		want string // "" with ok=false means error expected
		ok   bool
	}{
		{"empty", nil, 10, "", false},
		{"eof only", eof, 0, "", true},
		{"eof then garbage", cat(eof, []byte{0}), 10, "", false},
		{"eof bad length", []byte{0x12, 0, 0}, 10, "", false},
		{"eof truncated", []byte{0x11, 0}, 10, "", false},
		{"first byte 18: 1 literal", cat([]byte{18, 'a'}, eof), 10, "a", true},
		{"first byte 20: 3 literals", cat([]byte{20, 'a', 'b', 'c'}, eof), 10, "abc", true},
		{"first byte 21: 4 literals", cat([]byte{21, 'a', 'b', 'c', 'd'}, eof), 10, "abcd", true},
		{"first byte 255: 238 literals", cat([]byte{255}, bytes.Repeat([]byte("x"), 238), eof), 238, strings.Repeat("x", 238), true},
		{"first literals truncated", []byte{22, 'a'}, 10, "", false},
		{"first literals too big", cat([]byte{22, 'a', 'b', 'c', 'd', 'e'}, eof), 4, "", false},
		// Literal run 0000LLLL: L=1 -> 4 literals.
		{"literal run", cat([]byte{1, 'a', 'b', 'c', 'd'}, eof), 10, "abcd", true},
		// Zero-extended literal run: 0, then 0x00 (255), then 1: 255+15+1+3 = 274.
		{"long literal run", cat([]byte{0, 0, 1}, bytes.Repeat([]byte("y"), 274), eof), 274, strings.Repeat("y", 274), true},
		{"zero run to end of input", cat([]byte{0}, zeros(1<<16)), 1 << 24, "", false},
		{"zero run exceeds output", cat([]byte{0}, zeros(100), []byte{1}), 1000, "", false},
		// "abc" then M2 01LDDDSS with L=1 (len 4), D=2 (dist 3), S=0: "abcabca".
		{"M2 overlap", cat([]byte{20, 'a', 'b', 'c', 0x40 | 0x20 | 2<<2, 0}, eof), 10, "abcabca", true},
		// M2 with 2 trailing literals.
		{"M2 trailing literals", cat([]byte{20, 'a', 'b', 'c', 0x40 | 2<<2 | 2, 0, 'x', 'y'}, eof), 10, "abcabcxy", true},
		// After 1..3 literals, 0000DDSS is a 2-byte match at distance 1+D+(H<<2).
		{"M1 after short run", cat([]byte{19, 'a', 'b', 1<<2 | 1, 0, 'z'}, eof), 10, "ababz", true},
		// After a long literal run, 0000DDSS is a 3-byte match at distance
		// 2049+D+(H<<2); with only 257 bytes of history it must fail.
		{"M1 after long run lookbehind", cat([]byte{0, 0xef}, bytes.Repeat([]byte("q"), 257), []byte{0, 0}, eof), 3000, "", false},
		{"lookbehind M2 at start", cat([]byte{18, 'a', 0x40 | 1<<2, 0}, eof), 10, "", false},
		{"lookbehind M1 at start", cat([]byte{19, 'a', 'b', 0, 1}, eof), 10, "", false},
		// M3 001LLLLL, L=2 -> 4 bytes, distance 1 (word 0): "aaaaa".
		{"M3 run", cat([]byte{18, 'a', 0x22, 0, 0}, eof), 10, "aaaaa", true},
		// M3 zero-extended: L=0, ext byte 1 -> 31+1+2 = 34 bytes.
		{"M3 long", cat([]byte{18, 'a', 0x20, 1, 0, 0}, eof), 40, strings.Repeat("a", 35), true},
		{"M3 truncated", []byte{18, 'a', 0x22, 0}, 10, "", false},
		{"M3 too long for dst", cat([]byte{18, 'a', 0x20, 1, 0, 0}, eof), 34, "", false},
		// M4 0001HLLL L=1 -> 3 bytes, H=0, D=1 -> distance 16385 (beyond start).
		{"M4 lookbehind", cat([]byte{18, 'a', 0x11, 4, 0}, eof), 10, "", false},
		{"M4 H lookbehind", cat([]byte{18, 'a', 0x19, 0, 0}, eof), 10, "", false},
		{"M4 truncated ext", []byte{18, 'a', 0x10, 0, 0}, 10, "", false},
		{"truncated M2", []byte{18, 'a', 0x40}, 10, "", false},
		{"truncated M1", []byte{18, 'a', 0x01}, 10, "", false},
		{"trailing literals truncated", []byte{20, 'a', 'b', 'c', 0x43, 0, 'x'}, 10, "", false},
		{"trailing literals overflow", cat([]byte{20, 'a', 'b', 'c', 0x42, 0, 'x', 'y'}, eof), 7, "", false},
	}
	// Literal run of 2100 bytes (0, eight 0x00, 42: 8*255+15+42+3), then a
	// 3-byte M1 match with D=1, H=1: distance 2049+1+4 = 2054.
	long := random(2100, 5)
	tests = append(tests, struct {
		name string
		src  []byte
		dst  int
		want string
		ok   bool
	}{"M1 after long run", cat([]byte{0}, zeros(8), []byte{42}, long, []byte{1 << 2, 1}, eof), 2103,
		string(long) + string(long[2100-2054:2100-2054+3]), true})

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]byte, tc.dst)
			n, err := Decompress(dst, tc.src)
			if tc.ok {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if string(dst[:n]) != tc.want {
					t.Fatalf("got %q, want %q", dst[:n], tc.want)
				}
			} else if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got n=%d err=%v, want ErrCorrupt", n, err)
			}
			checkDecode(t, dst, tc.src)
		})
	}
}

func TestNoAllocs(t *testing.T) {
	blk := compressedBlocks(t, lzopCompress(t, "-9", mixed(100000)))[0]
	dst := make([]byte, blk.ulen)
	bad := bytes.Clone(blk.data[:len(blk.data)/2])
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := Decompress(dst, blk.data); err != nil {
			t.Fatal(err)
		}
		if _, err := Decompress(dst, bad); err == nil {
			t.Fatal("no error")
		}
		Decompress(dst, append(make([]byte, 0, 8), 0, 0, 0, 0)) // zero run
	})
	if allocs != 0 {
		t.Fatalf("Decompress allocates %v times per run", allocs)
	}
}

// ---- fuzzing -----------------------------------------------------------------

// FuzzDecompress is seeded from testdata/fuzz/FuzzDecompress, which
// gen_seeds.sh fills with real lzop-produced LZO1X blocks.
func FuzzDecompress(f *testing.F) {
	f.Fuzz(func(t *testing.T, src []byte) {
		for _, size := range []int{0, 64, 4096, 1 << 17} {
			checkDecode(t, make([]byte, size), src)
		}
	})
}

// TestGenerateFuzzSeeds writes the fuzz seed corpus. It runs only when
// LZO_GEN_SEEDS=1 (see gen_seeds.sh).
func TestGenerateFuzzSeeds(t *testing.T) {
	if os.Getenv("LZO_GEN_SEEDS") != "1" {
		t.Skip("set LZO_GEN_SEEDS=1 (gen_seeds.sh) to regenerate testdata/fuzz")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecompress")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "lzop-*"))
	for _, p := range old {
		os.Remove(p)
	}
	seeds := []input{
		{"text300", text(300)},
		{"text2000", text(2000)},
		{"mixed3000", mixed(3000)},
		{"mixed12000", mixed(12000)},
		{"zeros1000", make([]byte, 1000)},
		{"zeros70000", make([]byte, 70000)},
		{"period3", bytes.Repeat([]byte("xyz"), 400)},
		{"elf4096", goBinary(t, 4096)},
		{"elf30000", goBinary(t, 30000)[20000:]},
	}
	count := 0
	for _, level := range []string{"-1", "-9"} {
		for _, s := range seeds {
			for i, blk := range compressedBlocks(t, lzopCompress(t, level, s.data)) {
				name := fmt.Sprintf("lzop%s-%s-%d", level, s.name, i)
				content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", blk.data)
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				count++
			}
		}
	}
	t.Logf("wrote %d seeds to %s", count, dir)
}

// ---- benchmark -----------------------------------------------------------------

var (
	benchOnce               sync.Once
	benchChunks, benchWhole []lzopBlock
	benchErr                error
)

// BenchmarkDecompress decodes the Go toolchain binary (a real ELF
// executable) compressed with `lzop -9` (lzo1x_999). SetBytes counts
// uncompressed bytes.
//
//   - 128KiB: the binary split into 128 KiB files, each compressed
//     separately, the shape of squashfs data blocks;
//   - lzop-file: the whole binary as one .lzo file (lzop's 256 KiB blocks),
//     the same work `lzop -d` does on it (minus lzop's checksums and I/O).
func BenchmarkDecompress(b *testing.B) {
	lz := lzopPath(b)
	data := goBinary(b, 1<<30)
	benchOnce.Do(func() { benchChunks, benchWhole, benchErr = benchSetup(b, lz, data) })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	b.Run("128KiB", func(b *testing.B) { benchBlocks(b, benchChunks) })
	b.Run("lzop-file", func(b *testing.B) { benchBlocks(b, benchWhole) })
}

func benchSetup(b *testing.B, lz string, data []byte) (chunks, whole []lzopBlock, err error) {
	dir := b.TempDir()
	names := []string{filepath.Join(dir, "whole")}
	if err := os.WriteFile(names[0], data, 0o644); err != nil {
		return nil, nil, err
	}
	for off, i := 0, 0; off < len(data); off, i = off+128<<10, i+1 {
		end := min(off+128<<10, len(data))
		name := filepath.Join(dir, fmt.Sprintf("chunk%05d", i))
		if err := os.WriteFile(name, data[off:end], 0o644); err != nil {
			return nil, nil, err
		}
		names = append(names, name)
	}
	if out, err := runCmd(lz, append([]string{"-9", "-q"}, names...)...); err != nil {
		return nil, nil, fmt.Errorf("lzop: %v: %s", err, out)
	}
	for i, name := range names {
		file, err := os.ReadFile(name + ".lzo")
		if err != nil {
			return nil, nil, err
		}
		_, blocks, err := parseLzop(file)
		if err != nil {
			return nil, nil, err
		}
		if i == 0 {
			whole = blocks
		} else {
			chunks = append(chunks, blocks...)
		}
	}
	return chunks, whole, nil
}

func benchBlocks(b *testing.B, blocks []lzopBlock) {
	var total, comp, maxLen int
	for _, blk := range blocks {
		total += blk.ulen
		comp += len(blk.data)
		maxLen = max(maxLen, blk.ulen)
	}
	dst := make([]byte, maxLen)
	b.SetBytes(int64(total))
	for b.Loop() {
		for _, blk := range blocks {
			if blk.stored {
				copy(dst, blk.data)
				continue
			}
			if _, err := Decompress(dst[:blk.ulen], blk.data); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(comp)/float64(total), "ratio")
}
