package flate

import "encoding/binary"

// decoder holds the per-call state. It is large (mostly decode tables), so
// it is pooled rather than allocated per call or placed on the stack.
type decoder struct {
	src      []byte
	bitbuf   uint64 // unconsumed bits, LSB first; bits above bitsleft are 0 or the true next input bits
	bitsleft uint   // number of valid bits in bitbuf, 0..63
	in       int    // next input byte to load into bitbuf
	overread int    // zero bytes loaded past the end of src (at most 8)

	lit  [litTableSize]uint32
	dist [distTableSize]uint32
	pre  [preTableSize]uint32
	lens [maxLitSyms + maxDistSyms]uint8
}

// refill ensures at least 56 bits are in the bit buffer, loading zero bytes
// past the end of the input (counted in overread) if necessary.
func (d *decoder) refill() error {
	if d.in+8 <= len(d.src) {
		d.bitbuf |= binary.LittleEndian.Uint64(d.src[d.in:]) << (d.bitsleft & 63)
		d.in += int((63 - d.bitsleft) >> 3)
		d.bitsleft |= 56
		return nil
	}
	for d.bitsleft < 56 {
		if d.in < len(d.src) {
			d.bitbuf |= uint64(d.src[d.in]) << d.bitsleft
			d.in++
		} else {
			if d.overread >= 8 {
				return errTruncated
			}
			d.overread++
		}
		d.bitsleft += 8
	}
	return nil
}

func (d *decoder) consume(n uint) {
	d.bitbuf >>= n & 63
	d.bitsleft -= n
}

// inflate decodes the raw DEFLATE stream src into dst. It returns the number
// of bytes written and the offset in src just past the end of the stream.
func (d *decoder) inflate(dst, src []byte) (out, end int, err error) {
	d.src = src
	d.bitbuf, d.bitsleft, d.in, d.overread = 0, 0, 0, 0
	defer func() { d.src = nil }()
	for {
		if err = d.refill(); err != nil {
			return out, 0, err
		}
		hdr := d.bitbuf
		d.consume(3)
		switch (hdr >> 1) & 3 {
		case 0:
			out, err = d.stored(dst, out)
		case 1:
			out, err = d.huffmanBlock(dst, out, &fixedLit, &fixedDist)
		case 2:
			if err = d.readDynamicHeader(); err == nil {
				out, err = d.huffmanBlock(dst, out, &d.lit, &d.dist)
			}
		default:
			err = errBlockType
		}
		if err != nil {
			return out, 0, err
		}
		if hdr&1 != 0 {
			break
		}
	}
	end = d.in + d.overread - int(d.bitsleft>>3)
	if end > len(src) {
		return out, 0, errTruncated
	}
	return out, end, nil
}

func (d *decoder) stored(dst []byte, out int) (int, error) {
	d.consume(d.bitsleft & 7)
	pos := d.in + d.overread - int(d.bitsleft>>3)
	d.bitbuf, d.bitsleft, d.overread = 0, 0, 0
	src := d.src
	if pos > len(src) || len(src)-pos < 4 {
		return out, errTruncated
	}
	n := int(binary.LittleEndian.Uint16(src[pos:]))
	if uint16(n) != ^binary.LittleEndian.Uint16(src[pos+2:]) {
		return out, errStoredLen
	}
	pos += 4
	if len(src)-pos < n {
		return out, errTruncated
	}
	if len(dst)-out < n {
		return out, errOverflow
	}
	copy(dst[out:], src[pos:pos+n])
	d.in = pos + n
	return out + n, nil
}

func (d *decoder) readDynamicHeader() error {
	if err := d.refill(); err != nil {
		return err
	}
	nlit := int(d.bitbuf&31) + 257
	ndist := int(d.bitbuf>>5&31) + 1
	npre := int(d.bitbuf>>10&15) + 4
	d.consume(14)
	if nlit > 286 || ndist > 30 {
		return errHeaderCounts
	}
	var prelens [numPreSyms]uint8
	for i := 0; i < npre; i++ {
		if d.bitsleft < 3 {
			if err := d.refill(); err != nil {
				return err
			}
		}
		prelens[preOrder[i]] = uint8(d.bitbuf & 7)
		d.consume(3)
	}
	if !buildTable(d.pre[:], prelens[:], preInfo[:], preTableBits) {
		return errPrecode
	}
	n := nlit + ndist
	lens := d.lens[:n]
	for i := 0; i < n; {
		if d.bitsleft < 14 {
			if err := d.refill(); err != nil {
				return err
			}
		}
		e := d.pre[d.bitbuf&(preTableSize-1)]
		if e&flagInvalid != 0 {
			return errPrecode
		}
		d.consume(uint(e & 63))
		sym := uint8(e >> 16)
		if sym < 16 {
			lens[i] = sym
			i++
			continue
		}
		var rep int
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				return errRepeat
			}
			val = lens[i-1]
			rep = 3 + int(d.bitbuf&3)
			d.consume(2)
		case 17:
			rep = 3 + int(d.bitbuf&7)
			d.consume(3)
		default:
			rep = 11 + int(d.bitbuf&127)
			d.consume(7)
		}
		if rep > n-i {
			return errRepeat
		}
		for j := i; j < i+rep; j++ {
			lens[j] = val
		}
		i += rep
	}
	if lens[256] == 0 {
		return errNoEOB
	}
	if !buildTable(d.lit[:], lens[:nlit], litlenInfo[:], litTableBits) {
		return errLitlenCode
	}
	if !buildTable(d.dist[:], lens[nlit:], distInfo[:], distTableBits) {
		return errDistCode
	}
	return nil
}

// huffmanBlock decodes the body of a Huffman-coded block with the given
// tables, up to and including its end-of-block code.
func (d *decoder) huffmanBlock(dst []byte, out int, lt *[litTableSize]uint32, dt *[distTableSize]uint32) (int, error) {
	src := d.src
	bitbuf, bitsleft, in := d.bitbuf, d.bitsleft, d.in

	// Fast loop: at the top of each iteration at least 16 input bytes and
	// 270 output bytes remain, enough for two word refills and for a
	// match of 258 bytes preceded by two literals, with word-copy overrun.
	// At the top of each iteration bitsleft >= 56 and e holds the main
	// table entry for the next codeword (preloaded to hide its latency).
	inLimit := len(src) - 16
	outLimit := len(dst) - 270
	if in <= inLimit && out <= outLimit {
		bitbuf |= binary.LittleEndian.Uint64(src[in:]) << (bitsleft & 63)
		in += int((63 - bitsleft) >> 3)
		bitsleft |= 56
	}
	e := lt[bitbuf&(1<<litTableBits-1)]
	for in <= inLimit && out <= outLimit {
		if e&flagLit != 0 {
			bitbuf >>= e & 63
			bitsleft -= uint(e & 63)
			dst[out] = byte(e >> 16)
			out++
			e = lt[bitbuf&(1<<litTableBits-1)]
			if e&flagLit != 0 {
				bitbuf >>= e & 63
				bitsleft -= uint(e & 63)
				dst[out] = byte(e >> 16)
				out++
				e = lt[bitbuf&(1<<litTableBits-1)]
				if e&flagLit != 0 {
					// Three literals use at most 45 bits: at least 11
					// remain, so the preloaded entry is valid.
					bitbuf >>= e & 63
					bitsleft -= uint(e & 63)
					dst[out] = byte(e >> 16)
					out++
					e = lt[bitbuf&(1<<litTableBits-1)]
					bitbuf |= binary.LittleEndian.Uint64(src[in:]) << (bitsleft & 63)
					in += int((63 - bitsleft) >> 3)
					bitsleft |= 56
					continue
				}
			}
			// At least 26 bits remain, enough for the main table lookup
			// already done; top up for the length and distance.
			bitbuf |= binary.LittleEndian.Uint64(src[in:]) << (bitsleft & 63)
			in += int((63 - bitsleft) >> 3)
			bitsleft |= 56
		}
		if e&flagSub != 0 {
			bitbuf >>= e & 63
			bitsleft -= uint(e & 63)
			e = lt[(uint(e>>16)+uint(bitbuf)&(1<<(e>>8&15)-1))&(litTableSize-1)]
			if e&flagLit != 0 {
				bitbuf >>= e & 63
				bitsleft -= uint(e & 63)
				dst[out] = byte(e >> 16)
				out++
				bitbuf |= binary.LittleEndian.Uint64(src[in:]) << (bitsleft & 63)
				in += int((63 - bitsleft) >> 3)
				bitsleft |= 56
				e = lt[bitbuf&(1<<litTableBits-1)]
				continue
			}
		}
		if e&(flagEOB|flagInvalid) != 0 {
			if e&flagEOB != 0 {
				bitbuf >>= e & 63
				bitsleft -= uint(e & 63)
				d.bitbuf, d.bitsleft, d.in = bitbuf, bitsleft, in
				return out, nil
			}
			return out, errSymbol
		}
		length := int(e>>16) + int((bitbuf&(1<<(e&63)-1))>>(e>>8&15))
		bitbuf >>= e & 63
		bitsleft -= uint(e & 63)

		e = dt[bitbuf&(1<<distTableBits-1)]
		if e&flagSub != 0 {
			bitbuf >>= e & 63
			bitsleft -= uint(e & 63)
			e = dt[(uint(e>>16)+uint(bitbuf)&(1<<(e>>8&15)-1))&(distTableSize-1)]
		}
		if e&flagInvalid != 0 {
			return out, errDistSymbol
		}
		dist := int(e>>16) + int((bitbuf&(1<<(e&63)-1))>>(e>>8&15))
		bitbuf >>= e & 63
		bitsleft -= uint(e & 63)
		if dist > out {
			return out, errDistTooFar
		}
		// Refill and preload the next entry before copying the match.
		bitbuf |= binary.LittleEndian.Uint64(src[in:]) << (bitsleft & 63)
		in += int((63 - bitsleft) >> 3)
		bitsleft |= 56
		e = lt[bitbuf&(1<<litTableBits-1)]

		s := out - dist
		end := out + length
		switch {
		case dist >= 8:
			// Words never overlap unwritten bytes: each 8-byte source
			// window lies before the window being written.
			binary.LittleEndian.PutUint64(dst[out:], binary.LittleEndian.Uint64(dst[s:]))
			binary.LittleEndian.PutUint64(dst[out+8:], binary.LittleEndian.Uint64(dst[s+8:]))
			for o := out + 16; o < end; o += 8 {
				binary.LittleEndian.PutUint64(dst[o:], binary.LittleEndian.Uint64(dst[o-dist:]))
			}
		case dist == 1:
			v := uint64(dst[s]) * 0x0101010101010101
			for ; out < end; out += 8 {
				binary.LittleEndian.PutUint64(dst[out:], v)
			}
		default:
			for out < end {
				binary.LittleEndian.PutUint64(dst[out:], binary.LittleEndian.Uint64(dst[s:]))
				out += dist
				s += dist
			}
		}
		out = end
	}

	// Slow loop: near the end of the input or the output, with bytewise
	// refills and exact output bounds checks.
	overread := d.overread
	for {
		if in+8 <= len(src) {
			bitbuf |= binary.LittleEndian.Uint64(src[in:]) << (bitsleft & 63)
			in += int((63 - bitsleft) >> 3)
			bitsleft |= 56
		} else {
			for bitsleft < 56 {
				if in < len(src) {
					bitbuf |= uint64(src[in]) << bitsleft
					in++
				} else {
					if overread >= 8 {
						return out, errTruncated
					}
					overread++
				}
				bitsleft += 8
			}
		}
		e := lt[bitbuf&(1<<litTableBits-1)]
		if e&flagSub != 0 {
			bitbuf >>= e & 63
			bitsleft -= uint(e & 63)
			e = lt[(uint(e>>16)+uint(bitbuf)&(1<<(e>>8&15)-1))&(litTableSize-1)]
		}
		if e&flagLit != 0 {
			if out >= len(dst) {
				return out, errOverflow
			}
			bitbuf >>= e & 63
			bitsleft -= uint(e & 63)
			dst[out] = byte(e >> 16)
			out++
			continue
		}
		if e&(flagEOB|flagInvalid) != 0 {
			if e&flagEOB != 0 {
				bitbuf >>= e & 63
				bitsleft -= uint(e & 63)
				d.bitbuf, d.bitsleft, d.in, d.overread = bitbuf, bitsleft, in, overread
				return out, nil
			}
			return out, errSymbol
		}
		length := int(e>>16) + int((bitbuf&(1<<(e&63)-1))>>(e>>8&15))
		bitbuf >>= e & 63
		bitsleft -= uint(e & 63)

		e = dt[bitbuf&(1<<distTableBits-1)]
		if e&flagSub != 0 {
			bitbuf >>= e & 63
			bitsleft -= uint(e & 63)
			e = dt[(uint(e>>16)+uint(bitbuf)&(1<<(e>>8&15)-1))&(distTableSize-1)]
		}
		if e&flagInvalid != 0 {
			return out, errDistSymbol
		}
		dist := int(e>>16) + int((bitbuf&(1<<(e&63)-1))>>(e>>8&15))
		bitbuf >>= e & 63
		bitsleft -= uint(e & 63)
		if dist > out {
			return out, errDistTooFar
		}
		if length > len(dst)-out {
			return out, errOverflow
		}
		m := dst[out-dist : out+length]
		for i := dist; i < len(m); i++ {
			m[i] = m[i-dist]
		}
		out += length
	}
}
