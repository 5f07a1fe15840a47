package xz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
)

var allSizes = []int{0, 1, 4096, 131072, 1048576}

// TestRoundTripXZ compresses every standard input with the xz CLI as
// mksquashfs would (preset 9e, 1 MiB dictionary, CRC32) and decodes it.
func TestRoundTripXZ(t *testing.T) {
	needXZ(t)
	for _, in := range testInputs(t, allSizes) {
		t.Run(in.name, func(t *testing.T) {
			t.Parallel()
			comp := xzRun(t, in.data, "--format=xz", "--check=crc32", "--lzma2=preset=9e,dict=1MiB")
			var d Decoder
			got, err := decodeXZ(t, &d, comp, len(in.data))
			if err != nil {
				t.Fatalf("DecodeXZ: %v", err)
			}
			mustEqual(t, got, in.data)
			// A larger buffer must work too, and the decoder is reusable.
			got, err = decodeXZ(t, &d, comp, len(in.data)+100)
			if err != nil {
				t.Fatalf("DecodeXZ (larger buffer): %v", err)
			}
			mustEqual(t, got, in.data)
		})
	}
}

// TestRoundTripFilters covers BCJ/Delta filters and the check types.
func TestRoundTripFilters(t *testing.T) {
	needXZ(t)
	type variant struct {
		name string
		args []string
	}
	lz := "--lzma2=preset=9e,dict=1MiB"
	variants := []variant{
		{"x86", []string{"--check=crc32", "--x86", lz}},
		{"x86-start", []string{"--check=crc32", "--x86=start=4096", lz}},
		{"powerpc", []string{"--check=crc32", "--powerpc", lz}},
		{"ia64", []string{"--check=crc32", "--ia64", lz}},
		{"arm", []string{"--check=crc32", "--arm", lz}},
		{"arm-start", []string{"--check=crc32", "--arm=start=1024", lz}},
		{"armthumb", []string{"--check=crc32", "--armthumb", lz}},
		{"sparc", []string{"--check=crc32", "--sparc", lz}},
		{"delta4", []string{"--check=crc32", "--delta=dist=4", lz}},
		{"delta1", []string{"--check=crc32", "--delta=dist=1", lz}},
		{"delta256", []string{"--check=crc32", "--delta=dist=256", lz}},
		{"delta-x86", []string{"--check=crc32", "--delta=dist=2", "--x86", lz}},
		{"crc64", []string{"--check=crc64", lz}},
		{"sha256", []string{"--check=sha256", lz}},
		{"none", []string{"--check=none", lz}},
		{"preset0", []string{"--check=crc32", "--lzma2=preset=0"}},
		{"lc0lp2pb0", []string{"--check=crc32", "--lzma2=preset=6,lc=0,lp=2,pb=0"}},
		{"lc4lp0pb4", []string{"--check=crc32", "--lzma2=preset=6,lc=4,lp=0,pb=4"}},
		{"lc1lp3pb1", []string{"--check=crc32", "--lzma2=preset=6,lc=1,lp=3,pb=1"}},
		{"multiblock", []string{"--check=crc64", "--block-size=5000", lz}},
	}
	if xzSupports(t, "--arm64") {
		variants = append(variants, variant{"arm64", []string{"--check=crc32", "--arm64", lz}},
			variant{"arm64-start", []string{"--check=crc32", "--arm64=start=8192", lz}})
	} else {
		t.Logf("NOTE: %s has no --arm64; ARM64 is covered by the in-package encoder test only", xzPath)
	}
	if xzSupports(t, "--riscv") {
		variants = append(variants, variant{"riscv", []string{"--check=crc32", "--riscv", lz}})
	} else {
		t.Logf("NOTE: %s has no --riscv; RISC-V is covered by TestRISCVRoundTrip (ported encoder) only", xzPath)
	}
	sizes := []int{0, 1, 4096, 131072}
	ins := testInputs(t, sizes)
	ins = append(ins, input{name: "elf/1048576", data: elfBytes(t, 1<<20)})
	for _, v := range variants {
		for _, in := range ins {
			t.Run(v.name+"/"+in.name, func(t *testing.T) {
				t.Parallel()
				comp := xzRun(t, in.data, append([]string{"--format=xz"}, v.args...)...)
				var d Decoder
				got, err := decodeXZ(t, &d, comp, len(in.data))
				if err != nil {
					t.Fatalf("DecodeXZ: %v", err)
				}
				mustEqual(t, got, in.data)
			})
		}
	}
}

// TestMixedChunks mixes compressible and incompressible data so that the
// LZMA2 stream alternates between LZMA chunks (with state resets) and
// uncompressed chunks.
func TestMixedChunks(t *testing.T) {
	needXZ(t)
	var data []byte
	for i := 0; i < 6; i++ {
		data = append(data, textBytes(int64(i), 70000)...)
		data = append(data, randomBytes(int64(i), 90000)...)
	}
	data = data[:1<<20]
	comp := xzRun(t, data, "--format=xz", "--check=crc32", "--lzma2=preset=6,dict=1MiB")
	var d Decoder
	got, err := decodeXZ(t, &d, comp, len(data))
	if err != nil {
		t.Fatalf("DecodeXZ: %v", err)
	}
	mustEqual(t, got, data)
}

// TestConcatenatedStreams checks concatenated streams and stream padding.
func TestConcatenatedStreams(t *testing.T) {
	needXZ(t)
	a := textBytes(1, 3000)
	b := randomBytes(2, 100)
	ca := xzRun(t, a, "--format=xz", "--check=crc32")
	cb := xzRun(t, b, "--format=xz", "--check=sha256")
	tests := []struct {
		name    string
		src     []byte
		want    []byte
		wantErr error
	}{
		{"two", cat(ca, cb), cat(a, b), nil},
		{"padded", cat(ca, make([]byte, 8), cb, make([]byte, 4)), cat(a, b), nil},
		{"trailing-padding", cat(ca, make([]byte, 12)), a, nil},
		{"bad-padding", cat(ca, make([]byte, 3)), nil, ErrCorrupt},
		{"garbage", cat(ca, []byte("junk")), nil, ErrCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d Decoder
			got, err := decodeXZ(t, &d, tc.src, 10000)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeXZ: %v", err)
			}
			mustEqual(t, got, tc.want)
		})
	}
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// TestRoundTripLZMA covers the legacy format with unknown size plus end
// marker (as xz writes it) and with the size patched into the header (as
// squashfs's lzma compressor writes it).
func TestRoundTripLZMA(t *testing.T) {
	needXZ(t)
	opts := []string{
		"--lzma1=preset=6,dict=1MiB",
		"--lzma1=preset=9e,dict=1MiB",
		"--lzma1=preset=0",
		"--lzma1=preset=6,lc=0,lp=2,pb=0",
		"--lzma1=preset=6,lc=4,lp=0,pb=4",
	}
	for _, opt := range opts {
		for _, in := range testInputs(t, allSizes) {
			if len(in.data) == 1<<20 && opt != opts[0] {
				continue
			}
			t.Run(opt+"/"+in.name, func(t *testing.T) {
				t.Parallel()
				comp := xzRun(t, in.data, "--format=lzma", opt)
				var d Decoder
				got, err := decodeLZMA(t, &d, comp, len(in.data))
				if err != nil {
					t.Fatalf("DecodeLZMA (unknown size): %v", err)
				}
				mustEqual(t, got, in.data)

				known := append([]byte(nil), comp...)
				binary.LittleEndian.PutUint64(known[5:13], uint64(len(in.data)))
				got, err = decodeLZMA(t, &d, known, len(in.data)+7)
				if err != nil {
					t.Fatalf("DecodeLZMA (known size): %v", err)
				}
				mustEqual(t, got, in.data)

				if len(in.data) > 0 {
					_, err = decodeLZMA(t, &d, comp, len(in.data)-1)
					if !errors.Is(err, ErrCorrupt) {
						t.Fatalf("DecodeLZMA into a short buffer: got %v, want ErrCorrupt", err)
					}
				}
			})
		}
	}
}

// TestOutputTooSmall checks that output beyond len(dst) is an error.
func TestOutputTooSmall(t *testing.T) {
	needXZ(t)
	for _, in := range testInputs(t, []int{1, 4096, 131072}) {
		t.Run(in.name, func(t *testing.T) {
			for _, args := range [][]string{
				{"--format=xz", "--check=crc32"},
				{"--format=xz", "--check=none", "--x86", "--lzma2"},
			} {
				comp := xzRun(t, in.data, args...)
				var d Decoder
				for _, size := range []int{0, len(in.data) / 2, len(in.data) - 1} {
					_, err := decodeXZ(t, &d, comp, size)
					if !errors.Is(err, ErrCorrupt) {
						t.Fatalf("%v size %d: got %v, want ErrCorrupt", args, size, err)
					}
					if !strings.Contains(err.Error(), "exceed") {
						t.Errorf("error %q does not mention the exceeded output size", err)
					}
				}
			}
		})
	}
}

// xzFixHeader recomputes the block header CRC32 of the first block of a
// single-stream .xz file after a test modified the header.
func xzFixHeader(b []byte) {
	hsize := (int(b[12]) + 1) * 4
	binary.LittleEndian.PutUint32(b[12+hsize-4:], crc32.ChecksumIEEE(b[12:12+hsize-4]))
}

// TestErrors is a table of malformed inputs and the error they produce.
func TestErrors(t *testing.T) {
	needXZ(t)
	data := textBytes(7, 20000)
	good := xzRun(t, data, "--format=xz", "--check=crc32", "--lzma2=preset=6")
	x86 := xzRun(t, data, "--format=xz", "--check=crc32", "--x86", "--lzma2=preset=6")
	mod := func(src []byte, f func(b []byte)) []byte {
		b := append([]byte(nil), src...)
		f(b)
		return b
	}
	tests := []struct {
		name    string
		src     []byte
		wantErr error
		wantMsg string
	}{
		{"empty", nil, ErrCorrupt, "too short"},
		{"bad-magic", mod(good, func(b []byte) { b[0] = 0 }), ErrCorrupt, "magic"},
		{"header-crc", mod(good, func(b []byte) { b[8]++ }), ErrCorrupt, "stream header CRC32"},
		{"unknown-check", mod(good, func(b []byte) {
			b[7] = 0x02
			binary.LittleEndian.PutUint32(b[8:], crc32.ChecksumIEEE(b[6:8]))
		}), ErrUnsupported, "check type"},
		{"unknown-filter", mod(x86, func(b []byte) {
			// The first filter ID of the block header is at offset 12+2.
			b[14] = 0x11
			xzFixHeader(b)
		}), ErrUnsupported, "filter 0x11"},
		{"lzma2-not-last", mod(x86, func(b []byte) {
			b[14] = 0x21
			xzFixHeader(b)
		}), ErrCorrupt, "LZMA2 is not the last"},
		{"block-header-crc", mod(good, func(b []byte) { b[13] ^= 0x40 }), ErrCorrupt, "block header CRC32"},
		{"data-crc", mod(good, func(b []byte) {
			// The block's CRC32 is the last 4 bytes before the index,
			// whose size the footer's backward size gives.
			index := (int(binary.LittleEndian.Uint32(b[len(b)-8:])) + 1) * 4
			b[len(b)-12-index-1] ^= 0xFF
		}), ErrCorrupt, "CRC32 mismatch over"},
		{"footer-magic", mod(good, func(b []byte) { b[len(b)-1] = 'X' }), ErrCorrupt, "footer magic"},
		{"truncated", good[:len(good)-1], ErrCorrupt, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d Decoder
			_, err := decodeXZ(t, &d, tc.src, len(data))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got err %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("error %q does not contain %q", err, tc.wantMsg)
			}
		})
	}
}

// lzma2Stream wraps raw LZMA2 data into a complete .xz stream (check none)
// so hand-made chunk sequences can be tested.
func lzma2Stream(lzma2 []byte, usize int) []byte {
	return lzma2StreamFilters(lzma2, usize, nil)
}

// lzma2StreamFilters is lzma2Stream with extra filter flags (ID, property
// size, properties) placed before LZMA2 in the block header; nfilters is
// the number of such filters.
func lzma2StreamFilters(lzma2 []byte, usize int, pre [][]byte) []byte {
	var b []byte
	b = append(b, headerMagic...)
	b = append(b, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE([]byte{0, 0}))
	// Block header: size, flags (filter count), filters, LZMA2 with dict
	// byte 0x14, padding.
	hdr := []byte{0, byte(len(pre))}
	for _, f := range pre {
		hdr = append(hdr, f...)
	}
	hdr = append(hdr, 0x21, 0x01, 0x14)
	for (len(hdr)+4)%4 != 0 {
		hdr = append(hdr, 0)
	}
	hdr[0] = byte((len(hdr)+4)/4 - 1)
	hdr = binary.LittleEndian.AppendUint32(hdr, crc32.ChecksumIEEE(hdr))
	b = append(b, hdr...)
	b = append(b, lzma2...)
	for i := len(lzma2); i%4 != 0; i++ {
		b = append(b, 0)
	}
	idx := []byte{0}
	idx = appendVLI(idx, 1)
	idx = appendVLI(idx, uint64(len(hdr)+len(lzma2)))
	idx = appendVLI(idx, uint64(usize))
	for len(idx)%4 != 0 {
		idx = append(idx, 0)
	}
	idx = binary.LittleEndian.AppendUint32(idx, crc32.ChecksumIEEE(idx))
	b = append(b, idx...)
	foot := binary.LittleEndian.AppendUint32(nil, uint32(len(idx)/4-1))
	foot = append(foot, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(foot))
	b = append(b, foot...)
	b = append(b, footerMagic...)
	return b
}

func appendVLI(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// TestLZMA2Chunks exercises hand-made LZMA2 chunk sequences.
func TestLZMA2Chunks(t *testing.T) {
	unc := func(ctrl byte, data string) []byte {
		n := len(data) - 1
		return append([]byte{ctrl, byte(n >> 8), byte(n)}, data...)
	}
	tests := []struct {
		name    string
		lzma2   []byte
		usize   int
		want    string
		wantErr error
		wantMsg string
	}{
		{"empty", []byte{0}, 0, "", nil, ""},
		{"uncompressed", cat(unc(1, "hello"), unc(2, " world"), []byte{0}), 11, "hello world", nil, ""},
		{"dict-reset-twice", cat(unc(1, "ab"), unc(1, "cd"), []byte{0}), 4, "abcd", nil, ""},
		{"no-dict-reset", cat(unc(2, "ab"), []byte{0}), 2, "", ErrCorrupt, "without dictionary reset"},
		{"bad-control", cat(unc(1, "ab"), []byte{3, 0, 0}), 2, "", ErrCorrupt, "invalid LZMA2 control"},
		{"lzma-without-props", cat(unc(1, "ab"), []byte{0x80, 0, 0, 0, 4, 0, 0, 0, 0, 0}), 3, "", ErrCorrupt, "without properties"},
		{"bad-props", []byte{0xE0, 0, 0, 0, 4, 225, 0, 0, 0, 0, 0}, 1, "", ErrCorrupt, "properties byte"},
		{"lclp-too-big", []byte{0xE0, 0, 0, 0, 4, 4 + 9*1, 0, 0, 0, 0, 0}, 1, "", ErrUnsupported, "lc+lp"},
		{"truncated-chunk", []byte{0xE0, 0, 0, 0, 40, 0x5D, 0, 0}, 1, "", ErrCorrupt, "compressed bytes"},
		{"missing-end", unc(1, "ab"), 2, "", ErrCorrupt, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := lzma2Stream(tc.lzma2, tc.usize)
			var d Decoder
			got, err := decodeXZ(t, &d, src, 100)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("got err %v, want %v containing %q", err, tc.wantErr, tc.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeXZ: %v", err)
			}
			if string(got) != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestLZMAErrors is a table of malformed legacy streams.
func TestLZMAErrors(t *testing.T) {
	needXZ(t)
	data := textBytes(3, 5000)
	good := xzRun(t, data, "--format=lzma")
	mod := func(f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		return b
	}
	tests := []struct {
		name    string
		src     []byte
		size    int
		wantErr error
		wantMsg string
	}{
		{"short-header", good[:12], 5000, ErrCorrupt, "13 byte header"},
		{"bad-props", mod(func(b []byte) { b[0] = 225 }), 5000, ErrCorrupt, "properties byte"},
		{"absurd-lclp", mod(func(b []byte) { b[0] = 8 + 9*4 }), 5000, ErrUnsupported, "lc+lp"},
		{"size-too-big", mod(func(b []byte) { binary.LittleEndian.PutUint64(b[5:], 5001) }), 5000, ErrCorrupt, "exceeds"},
		{"huge-size", mod(func(b []byte) { binary.LittleEndian.PutUint64(b[5:], 1<<62) }), 5000, ErrCorrupt, "exceeds"},
		{"rc-first-byte", mod(func(b []byte) { b[13] = 1 }), 5000, ErrCorrupt, "first byte"},
		{"truncated", good[:len(good)-3], 5000, ErrCorrupt, ""},
		{"known-size-larger", mod(func(b []byte) { binary.LittleEndian.PutUint64(b[5:], 5001) }), 6000, ErrCorrupt, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d Decoder
			got, err := decodeLZMA(t, &d, tc.src, tc.size)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("DecodeLZMA: %v", err)
				}
				mustEqual(t, got, data[:len(got)])
				return
			}
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("got err %v, want %v containing %q", err, tc.wantErr, tc.wantMsg)
			}
		})
	}
}

// TestTruncations decodes every prefix of small streams: all must fail
// cleanly (only the full stream succeeds).
func TestTruncations(t *testing.T) {
	needXZ(t)
	data := textBytes(11, 3000)
	for _, args := range [][]string{
		{"--format=xz", "--check=crc32"},
		{"--format=xz", "--check=none", "--arm", "--lzma2=preset=1"},
		{"--format=lzma"},
	} {
		comp := xzRun(t, data, args...)
		var d Decoder
		for n := 0; n <= len(comp); n++ {
			var err error
			var got []byte
			if args[0] == "--format=lzma" {
				got, err = decodeLZMA(t, &d, comp[:n], len(data))
			} else {
				got, err = decodeXZ(t, &d, comp[:n], len(data))
			}
			if n < len(comp) {
				if err == nil {
					t.Fatalf("%v: prefix of %d/%d bytes decoded without error", args, n, len(comp))
				}
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("%v: prefix %d: error %v does not wrap ErrCorrupt", args, n, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%v: full stream: %v", args, err)
			}
			mustEqual(t, got, data)
		}
	}
}

// TestByteFlips flips random bytes: with a CRC32 the result must be an
// error or the correct output; with no check it must at least not panic.
func TestByteFlips(t *testing.T) {
	needXZ(t)
	data := cat(textBytes(5, 40000), elfBytes(t, 30000))
	flips := 1000
	if testing.Short() {
		flips = 100
	}
	for _, args := range [][]string{
		{"--format=xz", "--check=crc32"},
		{"--format=xz", "--check=crc64", "--x86", "--lzma2=preset=6"},
		{"--format=xz", "--check=none", "--delta=dist=3", "--lzma2=preset=6"},
		{"--format=lzma"},
	} {
		comp := xzRun(t, data, args...)
		checked := args[0] != "--format=lzma" && args[1] != "--check=none"
		r := randomBytes(int64(len(comp)), 3*flips)
		var d Decoder
		for i := 0; i < flips; i++ {
			b := append([]byte(nil), comp...)
			pos := int(binary.LittleEndian.Uint16(r[3*i:])) % len(b)
			b[pos] ^= r[3*i+2] | 1
			var got []byte
			var err error
			if args[0] == "--format=lzma" {
				got, err = decodeLZMA(t, &d, b, len(data))
			} else {
				got, err = decodeXZ(t, &d, b, len(data))
			}
			if err != nil {
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
					t.Fatalf("flip at %d: error %v wraps neither sentinel", pos, err)
				}
				continue
			}
			if checked && !bytes.Equal(got, data) {
				t.Fatalf("%v: flip at %d: wrong output without error", args, pos)
			}
		}
	}
}

// TestAllocs checks that decoding does not allocate after warm-up.
func TestAllocs(t *testing.T) {
	needXZ(t)
	data := elfBytes(t, 200000)
	comp := xzRun(t, data, "--format=xz", "--check=crc64", "--x86", "--lzma2=preset=6")
	lz := xzRun(t, data, "--format=lzma")
	dst := make([]byte, len(data))
	var d Decoder
	if n := testing.AllocsPerRun(5, func() {
		if _, err := d.DecodeXZ(dst, comp); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("DecodeXZ: %v allocations per run, want 0", n)
	}
	if n := testing.AllocsPerRun(5, func() {
		if _, err := d.DecodeLZMA(dst, lz); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("DecodeLZMA: %v allocations per run, want 0", n)
	}
}

// TestDistanceError checks that a match reaching before the start of the
// output is reported as such: corrupting the first bytes of the range-coded
// data of a text stream quickly yields such a match.
func TestDistanceError(t *testing.T) {
	needXZ(t)
	data := textBytes(21, 2000)
	comp := xzRun(t, data, "--format=lzma")
	var d Decoder
	dst := make([]byte, len(data))
	for pos := 14; pos < 40; pos++ {
		for x := 1; x < 256; x++ {
			b := append([]byte(nil), comp...)
			b[pos] ^= byte(x)
			_, err := d.DecodeLZMA(dst, b)
			if err != nil && strings.Contains(err.Error(), "match distance") {
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "bytes of output") {
					t.Fatalf("unexpected error form: %v", err)
				}
				t.Logf("byte %d ^ 0x%02x: %v", pos, x, err)
				return
			}
		}
	}
	t.Fatal("no corruption produced a match-distance error")
}
