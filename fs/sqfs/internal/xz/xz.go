// Package xz is a fast, block-oriented decoder for the compressed blocks of
// squashfs images made with "mksquashfs -comp xz" or "-comp lzma".
//
// Each such block is one complete .xz stream (or one legacy .lzma stream)
// whose decompressed size is bounded by the squashfs block size, so the
// whole output fits in a caller-provided buffer. That buffer doubles as the
// LZ window: there is no circular dictionary, no streaming and no
// io.Reader. After warm-up nothing allocates except on the error path.
package xz

//go:generate sh gen_seeds.sh

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"
	"hash/crc64"
)

const (
	headerMagic = "\xFD7zXZ\x00"
	footerMagic = "YZ"

	checkNone   = 0x00
	checkCRC32  = 0x01
	checkCRC64  = 0x04
	checkSHA256 = 0x0A

	filterDelta   = 0x03
	filterX86     = 0x04
	filterPowerPC = 0x05
	filterIA64    = 0x06
	filterARM     = 0x07
	filterARMThum = 0x08
	filterSPARC   = 0x09
	filterARM64   = 0x0A
	filterRISCV   = 0x0B
	filterLZMA2   = 0x21

	maxFilters = 4
)

var crc64Table = crc64.MakeTable(crc64.ECMA)

// checkSize returns the size of the check field for a check ID (0..15).
func checkSize(id byte) int {
	if id == 0 {
		return 0
	}
	return 4 << ((id - 1) / 3)
}

// filter is one parsed non-LZMA2 filter of a block header.
type filter struct {
	id    uint64
	start uint32 // BCJ start offset, or Delta distance
}

// readVLI reads an xz variable-length integer (at most 9 bytes, no
// superfluous trailing zero byte).
func readVLI(b []byte) (uint64, int, error) {
	var v uint64
	for i := 0; i < 9; i++ {
		if i >= len(b) {
			return 0, 0, corruptf("truncated variable-length integer")
		}
		c := b[i]
		v |= uint64(c&0x7F) << (7 * uint(i))
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				return 0, 0, corruptf("non-minimal variable-length integer")
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, corruptf("variable-length integer longer than 9 bytes")
}

// DecodeXZ decodes src, one complete .xz stream (stream header, one or more
// blocks, index, footer; stream padding tolerated), into dst and returns
// the number of bytes written. It fails with an error wrapping ErrCorrupt
// if src is malformed or the output would exceed len(dst), and
// ErrUnsupported for a filter or check it does not know. Concatenated
// streams (separated by stream padding) are accepted as well.
func (d *Decoder) DecodeXZ(dst, src []byte) (int, error) {
	out := 0
	pos := 0
	for {
		n, used, err := d.decodeStream(dst[out:], src[pos:], out)
		if err != nil {
			return out + n, err
		}
		out += n
		pos += used
		// Stream padding: zero bytes, a multiple of four in total.
		pad := 0
		for pos < len(src) && src[pos] == 0 {
			pos++
			pad++
		}
		if pad%4 != 0 {
			return out, corruptf("stream padding of %d bytes is not a multiple of four", pad)
		}
		if pos == len(src) {
			return out, nil
		}
	}
}

// decodeStream decodes one stream at the start of src. base is the number
// of bytes already written before dst (for error messages only).
func (d *Decoder) decodeStream(dst, src []byte, base int) (int, int, error) {
	if len(src) < 12+12 {
		return 0, 0, corruptf("input of %d bytes is too short for an xz stream", len(src))
	}
	if string(src[:6]) != headerMagic {
		return 0, 0, corruptf("bad stream header magic % x", src[:6])
	}
	if crc32.ChecksumIEEE(src[6:8]) != binary.LittleEndian.Uint32(src[8:12]) {
		return 0, 0, corruptf("stream header CRC32 mismatch")
	}
	if src[6] != 0 || src[7]&0xF0 != 0 {
		return 0, 0, unsupportedf("stream flags 0x%02x%02x", src[6], src[7])
	}
	check := src[7] & 0x0F
	switch check {
	case checkNone, checkCRC32, checkCRC64, checkSHA256:
	default:
		return 0, 0, unsupportedf("check type 0x%02x", check)
	}
	csize := checkSize(check)

	pos := 12
	out := 0
	// Index records are verified without allocating: count, sums and an
	// order-dependent hash of the (unpadded size, uncompressed size) pairs.
	var (
		nblocks                uint64
		sumUnpadded, sumUncomp uint64
		recHash                uint64
	)
	for {
		if pos >= len(src) {
			return out, pos, corruptf("truncated stream: missing index")
		}
		if src[pos] == 0 {
			break // index indicator
		}
		n, used, unpadded, err := d.decodeBlock(dst[out:], src[pos:], check, csize)
		if err != nil {
			return out + n, pos, err
		}
		out += n
		pos += used
		nblocks++
		sumUnpadded += unpadded
		sumUncomp += uint64(n)
		recHash = mixRecord(recHash, unpadded, uint64(n))
	}

	// Index.
	istart := pos
	p := pos + 1
	count, k, err := readVLI(src[p:])
	if err != nil {
		return out, pos, err
	}
	p += k
	if count != nblocks {
		return out, pos, corruptf("index lists %d blocks, stream has %d", count, nblocks)
	}
	var iUnpadded, iUncomp uint64
	var iHash uint64
	for i := uint64(0); i < count; i++ {
		u, k, err := readVLI(src[p:])
		if err != nil {
			return out, pos, err
		}
		p += k
		s, k, err := readVLI(src[p:])
		if err != nil {
			return out, pos, err
		}
		p += k
		iUnpadded += u
		iUncomp += s
		iHash = mixRecord(iHash, u, s)
	}
	if iUnpadded != sumUnpadded || iUncomp != sumUncomp || iHash != recHash {
		return out, pos, corruptf("index records do not match the blocks")
	}
	for (p-istart)%4 != 0 {
		if p >= len(src) {
			return out, pos, corruptf("truncated index")
		}
		if src[p] != 0 {
			return out, pos, corruptf("non-zero index padding")
		}
		p++
	}
	if len(src)-p < 4+12 {
		return out, pos, corruptf("truncated index or stream footer")
	}
	if crc32.ChecksumIEEE(src[istart:p]) != binary.LittleEndian.Uint32(src[p:]) {
		return out, pos, corruptf("index CRC32 mismatch")
	}
	p += 4
	indexSize := p - istart

	// Footer.
	f := src[p : p+12]
	if string(f[10:12]) != footerMagic {
		return out, pos, corruptf("bad stream footer magic")
	}
	if crc32.ChecksumIEEE(f[4:10]) != binary.LittleEndian.Uint32(f[0:4]) {
		return out, pos, corruptf("stream footer CRC32 mismatch")
	}
	if f[8] != src[6] || f[9] != src[7] {
		return out, pos, corruptf("stream footer flags differ from header")
	}
	if backward := (uint64(binary.LittleEndian.Uint32(f[4:8])) + 1) * 4; backward != uint64(indexSize) {
		return out, pos, corruptf("stream footer backward size %d, index is %d bytes", backward, indexSize)
	}
	return out, p + 12, nil
}

// mixRecord folds one index record into an order-dependent hash.
func mixRecord(h, unpadded, uncomp uint64) uint64 {
	h = (h ^ unpadded) * 0x9E3779B97F4A7C15
	h = (h ^ uncomp) * 0xC2B2AE3D27D4EB4F
	return h ^ h>>29
}

// decodeBlock decodes one block at the start of src into dst. It returns
// the bytes written, the bytes consumed (including padding and check) and
// the block's unpadded size.
func (d *Decoder) decodeBlock(dst, src []byte, check byte, csize int) (int, int, uint64, error) {
	hsize := (int(src[0]) + 1) * 4
	if hsize > len(src) {
		return 0, 0, 0, corruptf("truncated block header (%d bytes, have %d)", hsize, len(src))
	}
	hdr := src[:hsize]
	if crc32.ChecksumIEEE(hdr[:hsize-4]) != binary.LittleEndian.Uint32(hdr[hsize-4:]) {
		return 0, 0, 0, corruptf("block header CRC32 mismatch")
	}
	hdr = hdr[:hsize-4]
	flags := hdr[1]
	if flags&0x3C != 0 {
		return 0, 0, 0, unsupportedf("reserved block flags 0x%02x", flags)
	}
	p := 2
	compSize, uncompSize := int64(-1), int64(-1)
	if flags&0x40 != 0 {
		v, k, err := readVLI(hdr[p:])
		if err != nil {
			return 0, 0, 0, err
		}
		if v == 0 || v > uint64(len(src)) {
			return 0, 0, 0, corruptf("block compressed size %d invalid for %d bytes of input", v, len(src))
		}
		compSize = int64(v)
		p += k
	}
	if flags&0x80 != 0 {
		v, k, err := readVLI(hdr[p:])
		if err != nil {
			return 0, 0, 0, err
		}
		if v > uint64(len(dst)) {
			return 0, 0, 0, corruptf("block uncompressed size %d exceeds the %d byte output buffer", v, len(dst))
		}
		uncompSize = int64(v)
		p += k
	}
	nf := int(flags&3) + 1
	var filters [maxFilters]filter
	for i := 0; i < nf; i++ {
		id, k, err := readVLI(hdr[p:])
		if err != nil {
			return 0, 0, 0, err
		}
		p += k
		psize, k, err := readVLI(hdr[p:])
		if err != nil {
			return 0, 0, 0, err
		}
		p += k
		if psize > uint64(len(hdr)-p) {
			return 0, 0, 0, corruptf("filter properties overrun the block header")
		}
		props := hdr[p : p+int(psize)]
		p += int(psize)
		last := i == nf-1
		switch {
		case id == filterLZMA2:
			if !last {
				return 0, 0, 0, corruptf("LZMA2 is not the last filter")
			}
			if len(props) != 1 || props[0] > 40 {
				return 0, 0, 0, corruptf("invalid LZMA2 properties % x", props)
			}
		case last:
			return 0, 0, 0, unsupportedf("last filter 0x%x is not LZMA2", id)
		case id == filterDelta:
			if len(props) != 1 {
				return 0, 0, 0, corruptf("invalid Delta properties % x", props)
			}
			filters[i] = filter{id: id, start: uint32(props[0]) + 1}
		case id >= filterX86 && id <= filterRISCV:
			var start uint32
			switch len(props) {
			case 0:
			case 4:
				start = binary.LittleEndian.Uint32(props)
			default:
				return 0, 0, 0, corruptf("invalid BCJ properties % x", props)
			}
			filters[i] = filter{id: id, start: start}
		default:
			return 0, 0, 0, unsupportedf("filter 0x%x", id)
		}
	}
	for ; p < len(hdr); p++ {
		if hdr[p] != 0 {
			return 0, 0, 0, unsupportedf("non-zero block header padding")
		}
	}

	data := src[hsize:]
	if compSize >= 0 {
		if compSize > int64(len(data)) {
			return 0, 0, 0, corruptf("block compressed size %d exceeds the %d bytes left", compSize, len(data))
		}
		data = data[:compSize]
	}
	out := dst
	if uncompSize >= 0 {
		out = dst[:uncompSize]
	}
	n, used, err := d.decodeLZMA2(out, data)
	if err != nil {
		return n, 0, 0, err
	}
	if compSize >= 0 && int64(used) != compSize {
		return n, 0, 0, corruptf("block compressed size %d, LZMA2 data is %d bytes", compSize, used)
	}
	if uncompSize >= 0 && int64(n) != uncompSize {
		return n, 0, 0, corruptf("block uncompressed size %d, decoded %d bytes", uncompSize, n)
	}
	out = dst[:n]
	for i := nf - 2; i >= 0; i-- {
		applyFilter(filters[i], out)
	}

	pos := hsize + used
	unpadded := uint64(pos + csize)
	for pos%4 != 0 {
		if pos >= len(src) {
			return n, 0, 0, corruptf("truncated block padding")
		}
		if src[pos] != 0 {
			return n, 0, 0, corruptf("non-zero block padding")
		}
		pos++
	}
	if len(src)-pos < csize {
		return n, 0, 0, corruptf("truncated block check")
	}
	sum := src[pos : pos+csize]
	switch check {
	case checkCRC32:
		if crc32.ChecksumIEEE(out) != binary.LittleEndian.Uint32(sum) {
			return n, 0, 0, corruptf("CRC32 mismatch over %d bytes of block output", n)
		}
	case checkCRC64:
		if crc64.Checksum(out, crc64Table) != binary.LittleEndian.Uint64(sum) {
			return n, 0, 0, corruptf("CRC64 mismatch over %d bytes of block output", n)
		}
	case checkSHA256:
		if h := sha256.Sum256(out); string(h[:]) != string(sum) {
			return n, 0, 0, corruptf("SHA-256 mismatch over %d bytes of block output", n)
		}
	}
	return n, pos + csize, unpadded, nil
}

// decodeLZMA2 decodes LZMA2 chunks from src into dst until the end marker
// chunk. It returns the bytes written and the bytes of src consumed.
func (d *Decoder) decodeLZMA2(dst, src []byte) (int, int, error) {
	pos, dpos, dictStart := 0, 0, 0
	needDictReset, needProps := true, true
	for {
		if pos >= len(src) {
			return dpos, pos, corruptf("truncated LZMA2 data after %d bytes of output", dpos)
		}
		ctrl := src[pos]
		pos++
		if ctrl == 0 {
			return dpos, pos, nil
		}
		if ctrl >= 0xE0 || ctrl == 1 {
			needProps = true
			needDictReset = false
			dictStart = dpos
		} else if needDictReset {
			return dpos, pos, corruptf("LZMA2 chunk 0x%02x without dictionary reset", ctrl)
		}
		if ctrl < 0x80 {
			if ctrl > 2 {
				return dpos, pos, corruptf("invalid LZMA2 control byte 0x%02x", ctrl)
			}
			if len(src)-pos < 2 {
				return dpos, pos, corruptf("truncated LZMA2 chunk header")
			}
			size := int(src[pos])<<8 | int(src[pos+1]) + 1
			pos += 2
			if size > len(src)-pos {
				return dpos, pos, corruptf("uncompressed LZMA2 chunk of %d bytes, %d bytes left", size, len(src)-pos)
			}
			if size > len(dst)-dpos {
				return dpos, pos, corruptf("output would exceed %d bytes (uncompressed chunk of %d at %d)", len(dst), size, dpos)
			}
			copy(dst[dpos:], src[pos:pos+size])
			dpos += size
			pos += size
			continue
		}
		if len(src)-pos < 4 {
			return dpos, pos, corruptf("truncated LZMA2 chunk header")
		}
		usize := int(ctrl&0x1F)<<16 | int(src[pos])<<8 | int(src[pos+1]) + 1
		csize := int(src[pos+2])<<8 | int(src[pos+3]) + 1
		pos += 4
		if ctrl >= 0xC0 {
			if pos >= len(src) {
				return dpos, pos, corruptf("truncated LZMA2 chunk header")
			}
			lc, lp, pb, err := decodeProps(src[pos])
			if err != nil {
				return dpos, pos, err
			}
			pos++
			d.setProps(lc, lp, pb)
			needProps = false
			d.resetState()
		} else if needProps {
			return dpos, pos, corruptf("LZMA2 chunk 0x%02x without properties", ctrl)
		} else if ctrl >= 0xA0 {
			d.resetState()
		}
		if csize > len(src)-pos {
			return dpos, pos, corruptf("LZMA2 chunk of %d compressed bytes, %d bytes left", csize, len(src)-pos)
		}
		if usize > len(dst)-dpos {
			return dpos, pos, corruptf("output would exceed %d bytes (LZMA2 chunk of %d at %d)", len(dst), usize, dpos)
		}
		in := src[pos : pos+csize]
		ipos, err := d.initRC(in)
		if err != nil {
			return dpos, pos, err
		}
		end := dpos + usize
		var n int
		n, ipos, _, err = d.run(dst[dictStart:end], dpos-dictStart, in, ipos, false)
		n += dictStart
		if err != nil {
			return n, pos, err
		}
		d.rng, d.code, ipos = rcNorm(d.rng, d.code, in, ipos)
		if ipos != len(in) {
			return n, pos, corruptf("LZMA2 chunk used %d of %d compressed bytes", ipos, len(in))
		}
		if d.code != 0 {
			return n, pos, corruptf("LZMA2 chunk range coder did not finish cleanly")
		}
		dpos = n
		pos += csize
	}
}

// DecodeLZMA decodes the legacy "lzma alone" format that squashfs's lzma
// compressor writes (13-byte header: properties byte, 4-byte little-endian
// dictionary size, 8-byte little-endian uncompressed size which may be all
// 0xFF = unknown with an end marker) into dst and returns the number of
// bytes written. Only lc+lp <= 4 is supported, as in liblzma.
func (d *Decoder) DecodeLZMA(dst, src []byte) (int, error) {
	if len(src) < 13 {
		return 0, corruptf("lzma input of %d bytes is shorter than the 13 byte header", len(src))
	}
	lc, lp, pb, err := decodeProps(src[0])
	if err != nil {
		return 0, err
	}
	size := binary.LittleEndian.Uint64(src[5:13])
	limit := len(dst)
	known := size != unknownSize
	if known {
		if size > uint64(len(dst)) {
			return 0, corruptf("lzma uncompressed size %d exceeds the %d byte output buffer", size, len(dst))
		}
		limit = int(size)
	}
	d.setProps(lc, lp, pb)
	d.resetState()
	in := src[13:]
	ipos, err := d.initRC(in)
	if err != nil {
		return 0, err
	}
	n, ipos, sawEOPM, err := d.run(dst[:limit], 0, in, ipos, !known)
	if err != nil {
		return n, err
	}
	if known && n != limit {
		return n, corruptf("lzma stream ended after %d of %d bytes", n, limit)
	}
	_, code, ipos := rcNorm(d.rng, d.code, in, ipos)
	if ipos > len(in) {
		return n, corruptf("truncated lzma input (%d bytes)", len(src))
	}
	if sawEOPM && code != 0 {
		return n, corruptf("lzma range coder did not finish cleanly")
	}
	return n, nil
}
