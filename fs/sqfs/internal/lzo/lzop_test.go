package lzo

// Helpers that run the real lzop(1) and mksquashfs(1) tools and parse their
// output containers, so the decoder is tested against data made by liblzo2.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/adler32"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// lzopPath returns the lzop binary or skips the test loudly.
func lzopPath(tb testing.TB) string {
	tb.Helper()
	if p, err := exec.LookPath("lzop"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/bin/lzop", "/bin/lzop", "/usr/local/bin/lzop"} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	tb.Skip("SKIPPING: lzop(1) NOT FOUND in PATH or /usr/bin: real-data LZO1X tests cannot run (apt-get install lzop)")
	return ""
}

// lzopCompress compresses data with `lzop <level> -c` and returns the .lzo file.
func lzopCompress(tb testing.TB, level string, data []byte) []byte {
	tb.Helper()
	cmd := exec.Command(lzopPath(tb), level, "-c", "-q")
	cmd.Stdin = bytes.NewReader(data)
	var out, stderr bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("lzop %s: %v: %s", level, err, stderr.String())
	}
	return out.Bytes()
}

// lzop container constants (lzop's conf.h).
const (
	fAdler32D     = 0x00000001
	fAdler32C     = 0x00000002
	fHExtraField  = 0x00000040
	fCRC32D       = 0x00000100
	fCRC32C       = 0x00000200
	fHFilter      = 0x00000800
	fHCRC32       = 0x00001000
	lzopMethod1   = 1 // M_LZO1X_1
	lzopMethod115 = 2 // M_LZO1X_1_15
	lzopMethod999 = 3 // M_LZO1X_999
)

var lzopMagic = []byte{0x89, 'L', 'Z', 'O', 0x00, 0x0d, 0x0a, 0x1a, 0x0a}

type lzopHeader struct {
	version, libVersion, needed uint16
	method, level               uint8
	flags, mode                 uint32
	name                        string
}

type lzopBlock struct {
	ulen             int
	data             []byte // compressed bytes, or raw bytes if stored
	stored           bool   // compressed size == uncompressed size: stored raw
	hasDAdler, hasDC bool
	dAdler, dCRC     uint32
}

// parseLzop parses a .lzo file: magic, header (checked against its
// checksum), then blocks until a zero uncompressed length.
func parseLzop(b []byte) (lzopHeader, []lzopBlock, error) {
	var h lzopHeader
	if !bytes.HasPrefix(b, lzopMagic) {
		return h, nil, errors.New("bad lzop magic")
	}
	p := len(lzopMagic)
	need := func(n int) error {
		if len(b)-p < n {
			return fmt.Errorf("lzop file truncated at %d (need %d)", p, n)
		}
		return nil
	}
	u8 := func() uint8 { v := b[p]; p++; return v }
	u16 := func() uint16 { v := binary.BigEndian.Uint16(b[p:]); p += 2; return v }
	u32 := func() uint32 { v := binary.BigEndian.Uint32(b[p:]); p += 4; return v }

	hstart := p
	if err := need(2 + 2 + 2 + 1 + 1 + 4 + 4 + 4 + 4 + 4 + 1); err != nil {
		return h, nil, err
	}
	h.version = u16()
	h.libVersion = u16()
	if h.version >= 0x0940 {
		h.needed = u16()
	}
	h.method = u8()
	if h.version >= 0x0940 {
		h.level = u8()
	}
	h.flags = u32()
	if h.flags&fHFilter != 0 {
		_ = u32()
	}
	h.mode = u32()
	_ = u32() // mtime low
	if h.version >= 0x0940 {
		_ = u32() // mtime high
	}
	nlen := int(u8())
	if err := need(nlen + 4); err != nil {
		return h, nil, err
	}
	h.name = string(b[p : p+nlen])
	p += nlen
	var sum uint32
	if h.flags&fHCRC32 != 0 {
		sum = crc32.ChecksumIEEE(b[hstart:p])
	} else {
		sum = adler32.Checksum(b[hstart:p])
	}
	if got := u32(); got != sum {
		return h, nil, fmt.Errorf("lzop header checksum %#x, computed %#x", got, sum)
	}
	if h.flags&fHExtraField != 0 {
		if err := need(4); err != nil {
			return h, nil, err
		}
		n := int(u32())
		if err := need(n + 4); err != nil {
			return h, nil, err
		}
		p += n + 4
	}
	switch h.method {
	case lzopMethod1, lzopMethod115, lzopMethod999:
	default:
		return h, nil, fmt.Errorf("lzop method %d is not LZO1X", h.method)
	}

	var blocks []lzopBlock
	for {
		if err := need(4); err != nil {
			return h, nil, err
		}
		ulen := u32()
		if ulen == 0 {
			break
		}
		if err := need(4); err != nil {
			return h, nil, err
		}
		clen := u32()
		blk := lzopBlock{ulen: int(ulen), stored: clen == ulen}
		if clen > ulen || ulen > 64<<20 {
			return h, nil, fmt.Errorf("lzop block sizes %d/%d invalid", clen, ulen)
		}
		if h.flags&fAdler32D != 0 {
			if err := need(4); err != nil {
				return h, nil, err
			}
			blk.hasDAdler, blk.dAdler = true, u32()
		}
		if h.flags&fCRC32D != 0 {
			if err := need(4); err != nil {
				return h, nil, err
			}
			blk.hasDC, blk.dCRC = true, u32()
		}
		var cAdler, cCRC uint32
		hasCAdler := clen < ulen && h.flags&fAdler32C != 0
		hasCCRC := clen < ulen && h.flags&fCRC32C != 0
		if hasCAdler {
			if err := need(4); err != nil {
				return h, nil, err
			}
			cAdler = u32()
		}
		if hasCCRC {
			if err := need(4); err != nil {
				return h, nil, err
			}
			cCRC = u32()
		}
		if err := need(int(clen)); err != nil {
			return h, nil, err
		}
		blk.data = b[p : p+int(clen)]
		p += int(clen)
		if hasCAdler && adler32.Checksum(blk.data) != cAdler {
			return h, nil, errors.New("lzop compressed-data adler32 mismatch")
		}
		if hasCCRC && crc32.ChecksumIEEE(blk.data) != cCRC {
			return h, nil, errors.New("lzop compressed-data crc32 mismatch")
		}
		blocks = append(blocks, blk)
	}
	if p != len(b) {
		return h, nil, fmt.Errorf("lzop file has %d trailing bytes", len(b)-p)
	}
	return h, blocks, nil
}

// decodeLzop decodes every block of a .lzo file with Decompress, checking
// the per-block checksums lzop stored, and returns the concatenated output
// and the number of blocks that were actually LZO-compressed.
func decodeLzop(tb testing.TB, file []byte) ([]byte, int) {
	tb.Helper()
	_, blocks, err := parseLzop(file)
	if err != nil {
		tb.Fatalf("parse lzop output: %v", err)
	}
	var out []byte
	compressed := 0
	for i, blk := range blocks {
		var data []byte
		if blk.stored {
			data = blk.data
		} else {
			compressed++
			buf := make([]byte, blk.ulen)
			n, err := Decompress(buf, blk.data)
			if err != nil {
				tb.Fatalf("block %d (%d -> %d bytes): Decompress: %v", i, len(blk.data), blk.ulen, err)
			}
			if n != blk.ulen {
				tb.Fatalf("block %d: Decompress wrote %d bytes, lzop says %d", i, n, blk.ulen)
			}
			data = buf
		}
		if blk.hasDAdler && adler32.Checksum(data) != blk.dAdler {
			tb.Fatalf("block %d: adler32 of decoded data %#x, lzop stored %#x", i, adler32.Checksum(data), blk.dAdler)
		}
		if blk.hasDC && crc32.ChecksumIEEE(data) != blk.dCRC {
			tb.Fatalf("block %d: crc32 of decoded data mismatch", i)
		}
		out = append(out, data...)
	}
	return out, compressed
}

// compressedBlocks returns the LZO-compressed (not stored) blocks of a .lzo
// file together with their uncompressed sizes.
func compressedBlocks(tb testing.TB, file []byte) []lzopBlock {
	tb.Helper()
	_, blocks, err := parseLzop(file)
	if err != nil {
		tb.Fatalf("parse lzop output: %v", err)
	}
	var r []lzopBlock
	for _, b := range blocks {
		if !b.stored {
			r = append(r, b)
		}
	}
	return r
}

// goBinary returns up to max bytes of the Go toolchain binary, a real ELF
// executable, or skips if it cannot be found.
func goBinary(tb testing.TB, max int) []byte {
	tb.Helper()
	var cands []string
	if p, err := exec.LookPath("go"); err == nil {
		cands = append(cands, p)
	}
	cands = append(cands, filepath.Join(runtime.GOROOT(), "bin", "go"), "/usr/local/go/bin/go")
	for _, p := range cands {
		b, err := os.ReadFile(p)
		if err == nil && len(b) > 4 && string(b[1:4]) == "ELF" {
			if len(b) > max {
				b = b[:max]
			}
			return b
		}
	}
	tb.Skip("SKIPPING: no ELF Go binary found to use as test data")
	return nil
}

func mksquashfsPath(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("mksquashfs")
	if err != nil {
		for _, c := range []string{"/usr/bin/mksquashfs", "/usr/sbin/mksquashfs", "/sbin/mksquashfs"} {
			if _, err := os.Stat(c); err == nil {
				return c
			}
		}
		tb.Skip("SKIPPING: mksquashfs(1) not found (apt-get install squashfs-tools)")
	}
	return p
}

func runCmd(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}
