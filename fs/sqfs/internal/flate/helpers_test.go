package flate

import (
	"bytes"
	"compress/flate"
	stdzlib "compress/zlib"
	"errors"
	"io"
	"math/bits"
	"math/rand"
	"os"
	"testing"

	kpflate "github.com/klauspost/compress/flate"
	kpzlib "github.com/klauspost/compress/zlib"
)

// --- test data -----------------------------------------------------------

func randomData(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// textData returns n bytes of text: Go source if available, otherwise
// pseudo-random words.
func textData(n int) []byte {
	if src := goSrcTar(n); len(src) == n {
		return src
	}
	words := []string{"the ", "quick ", "brown ", "fox ", "jumps ", "over ", "lazy ", "dog\n", "func ", "return "}
	r := rand.New(rand.NewSource(1))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.Intn(len(words))])
	}
	return b.Bytes()[:n]
}

func elfData(tb testing.TB) []byte {
	b, err := os.ReadFile("/usr/local/go/bin/go")
	if err != nil {
		tb.Skip("no /usr/local/go/bin/go")
	}
	return b
}

// --- reference compressors -----------------------------------------------

func stdZlib(tb testing.TB, data []byte, level int) []byte {
	var b bytes.Buffer
	w, err := stdzlib.NewWriterLevel(&b, level)
	if err != nil {
		tb.Fatal(err)
	}
	w.Write(data)
	w.Close()
	return b.Bytes()
}

func stdRaw(tb testing.TB, data []byte, level int) []byte {
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, level)
	if err != nil {
		tb.Fatal(err)
	}
	w.Write(data)
	w.Close()
	return b.Bytes()
}

func kpZlib(tb testing.TB, data []byte, level int) []byte {
	var b bytes.Buffer
	w, err := kpzlib.NewWriterLevel(&b, level)
	if err != nil {
		tb.Fatal(err)
	}
	w.Write(data)
	w.Close()
	return b.Bytes()
}

func kpRaw(tb testing.TB, data []byte, level int) []byte {
	var b bytes.Buffer
	w, err := kpflate.NewWriter(&b, level)
	if err != nil {
		tb.Fatal(err)
	}
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// --- reference decoders (the oracle) ------------------------------------

// refDecode decodes src with the standard library (zlib wrapper if zlib is
// set). ok reports whether the stream is valid, ends exactly at the end of
// src and decodes to at most bound bytes: exactly the streams that
// Decompress/DecompressRaw must accept with a bound-sized buffer.
func refDecode(src []byte, zlib bool, bound int) (out []byte, ok bool) {
	r := bytes.NewReader(src)
	var rc io.Reader
	if zlib {
		zr, err := stdzlib.NewReader(r)
		if err != nil {
			return nil, false
		}
		rc = zr
	} else {
		rc = flate.NewReader(r)
	}
	out, err := io.ReadAll(io.LimitReader(rc, int64(bound)+1))
	if err != nil || len(out) > bound || r.Len() != 0 {
		return out, false
	}
	return out, true
}

// check decodes src with a bound-sized buffer and compares against the
// standard library.
func check(t testing.TB, src []byte, zlib bool, bound int) {
	t.Helper()
	want, ok := refDecode(src, zlib, bound)
	dst := make([]byte, bound)
	var n int
	var err error
	if zlib {
		n, err = Decompress(dst, src)
	} else {
		n, err = DecompressRaw(dst, src)
	}
	if ok {
		if err != nil {
			t.Fatalf("reference decoded %d bytes, we failed: %v (src %x)", len(want), err, trunc(src))
		}
		if !bytes.Equal(dst[:n], want) {
			t.Fatalf("output mismatch: got %d bytes, want %d (src %x)", n, len(want), trunc(src))
		}
		return
	}
	if err == nil {
		t.Fatalf("reference failed, we decoded %d bytes (src %x)", n, trunc(src))
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %v does not wrap ErrCorrupt", err)
	}
}

func trunc(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// --- a tiny DEFLATE bit writer for hand-built streams ---------------------

type bitWriter struct {
	out   []byte
	acc   uint64
	nbits uint
}

func (w *bitWriter) bits(v uint64, n uint) {
	w.acc |= v << w.nbits
	w.nbits += n
	for w.nbits >= 8 {
		w.out = append(w.out, byte(w.acc))
		w.acc >>= 8
		w.nbits -= 8
	}
}

// code writes a Huffman codeword (MSB-first per RFC 1951).
func (w *bitWriter) code(c uint16, n uint) {
	w.bits(uint64(bits.Reverse16(c)>>(16-n)), n)
}

func (w *bitWriter) align() {
	if w.nbits > 0 {
		w.bits(0, 8-w.nbits)
	}
}

func (w *bitWriter) bytes() []byte {
	w.align()
	return w.out
}

// canonical returns the canonical codewords for lengths.
func canonical(lens []uint8) []uint16 {
	var count [16]int
	for _, l := range lens {
		count[l]++
	}
	count[0] = 0
	var next [16]uint16
	code := uint16(0)
	for l := 1; l < 16; l++ {
		code = (code + uint16(count[l-1])) << 1
		next[l] = code
	}
	codes := make([]uint16, len(lens))
	for i, l := range lens {
		if l != 0 {
			codes[i] = next[l]
			next[l]++
		}
	}
	return codes
}

var (
	fixedLitLens = func() []uint8 {
		l := make([]uint8, 288)
		for i := range l {
			switch {
			case i < 144:
				l[i] = 8
			case i < 256:
				l[i] = 9
			case i < 280:
				l[i] = 7
			default:
				l[i] = 8
			}
		}
		return l
	}()
	fixedDistLens = bytes.Repeat([]byte{5}, 32)
)

// huffWriter emits symbols of one Huffman block.
type huffWriter struct {
	w                  *bitWriter
	litLens, distLens  []uint8
	litCodes, distCode []uint16
}

func newHuff(w *bitWriter, litLens, distLens []uint8) *huffWriter {
	return &huffWriter{w, litLens, distLens, canonical(litLens), canonical(distLens)}
}

func (h *huffWriter) lit(b byte) { h.w.code(h.litCodes[b], uint(h.litLens[b])) }
func (h *huffWriter) eob()       { h.w.code(h.litCodes[256], uint(h.litLens[256])) }

var (
	lenBaseT  = []int{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtraT = []uint{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBaseT = []int{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtT  = []uint{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
)

// match emits a length/distance pair using the highest-base symbols.
func (h *huffWriter) match(length, dist int) {
	ls := 28
	for lenBaseT[ls] > length || (ls == 28 && length != 258) {
		ls--
	}
	h.w.code(h.litCodes[257+ls], uint(h.litLens[257+ls]))
	h.w.bits(uint64(length-lenBaseT[ls]), lenExtraT[ls])
	ds := 29
	for distBaseT[ds] > dist {
		ds--
	}
	h.w.code(h.distCode[ds], uint(h.distLens[ds]))
	h.w.bits(uint64(dist-distBaseT[ds]), distExtT[ds])
}

// dynamicHeader writes a dynamic block header (after BFINAL/BTYPE) for the
// given code lengths, coding each length directly with a fixed complete
// precode (symbols 0-12 in 4 bits, 13-18 in 5 bits).
func dynamicHeader(w *bitWriter, litLens, distLens []uint8) {
	w.bits(uint64(len(litLens)-257), 5)
	w.bits(uint64(len(distLens)-1), 5)
	w.bits(19-4, 4)
	var pre [19]uint8
	for i := range pre {
		pre[i] = 4
		if i >= 13 {
			pre[i] = 5
		}
	}
	for _, s := range preOrder {
		w.bits(uint64(pre[s]), 3)
	}
	pc := canonical(pre[:])
	for _, l := range append(append([]uint8{}, litLens...), distLens...) {
		w.code(pc[l], uint(pre[l]))
	}
}
