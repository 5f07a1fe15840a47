package flate

import "math/bits"

// A decode table entry is a uint32:
//
//	bits  0-7   number of bits to consume: codeword length plus extra bits
//	            (or, for a subtable pointer, the main table's index bits)
//	bits  8-11  codeword length (the shift that exposes the extra bits), or
//	            for a subtable pointer the subtable's index bits
//	bit  12     invalid codeword
//	bit  13     subtable pointer
//	bit  14     end of block
//	bit  15     literal
//	bits 16-31  value: literal byte, length base, distance base, precode
//	            symbol, or subtable start index
//
// A length is therefore base + (bitbuf & mask(e&63)) >> ((e>>8)&15), with no
// further table lookups.
const (
	flagInvalid = 1 << 12
	flagSub     = 1 << 13
	flagEOB     = 1 << 14
	flagLit     = 1 << 15

	litTableBits  = 11
	distTableBits = 8
	preTableBits  = 7

	// Sizes are powers of two at least as large as the largest table that a
	// complete code can need (2342 and 402 entries, as computed by zlib's
	// "enough" program), so that indices can be masked instead of checked.
	litTableSize  = 4096
	distTableSize = 512
	preTableSize  = 1 << preTableBits

	maxLitSyms  = 288
	maxDistSyms = 32
	numPreSyms  = 19
)

var (
	litlenInfo [maxLitSyms]uint32
	distInfo   [maxDistSyms]uint32
	preInfo    [numPreSyms]uint32

	fixedLit  [litTableSize]uint32
	fixedDist [distTableSize]uint32

	// Order in which code length code lengths are stored (RFC 1951 3.2.7).
	preOrder = [numPreSyms]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
)

func init() {
	lenBase := [29]uint32{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
		35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra := [29]uint32{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
		3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase := [30]uint32{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
		257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra := [30]uint32{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
		7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	for i := range litlenInfo {
		switch {
		case i < 256:
			litlenInfo[i] = uint32(i)<<16 | flagLit
		case i == 256:
			litlenInfo[i] = flagEOB
		case i < 286:
			litlenInfo[i] = lenBase[i-257]<<16 | lenExtra[i-257]
		default:
			litlenInfo[i] = flagInvalid
		}
	}
	for i := range distInfo {
		if i < 30 {
			distInfo[i] = distBase[i]<<16 | distExtra[i]
		} else {
			distInfo[i] = flagInvalid
		}
	}
	for i := range preInfo {
		preInfo[i] = uint32(i) << 16
	}

	var lens [maxLitSyms]uint8
	for i := range lens {
		switch {
		case i < 144:
			lens[i] = 8
		case i < 256:
			lens[i] = 9
		case i < 280:
			lens[i] = 7
		default:
			lens[i] = 8
		}
	}
	if !buildTable(fixedLit[:], lens[:], litlenInfo[:], litTableBits) {
		panic("flate: bad fixed literal/length code")
	}
	for i := range lens[:maxDistSyms] {
		lens[i] = 5
	}
	if !buildTable(fixedDist[:], lens[:maxDistSyms], distInfo[:], distTableBits) {
		panic("flate: bad fixed distance code")
	}
}

// buildTable fills table with a decode table for the canonical Huffman code
// given by lens (one codeword length per symbol, 0 for unused symbols). info
// holds each symbol's entry without its length fields. It reports false if the
// lengths are over-subscribed, or incomplete in a way that zlib rejects: an
// incomplete code is accepted only if it is empty (every lookup then yields
// an invalid entry) or consists of a single codeword of length 1 (the
// codeword is 0, as in zlib; 1 is invalid).
func buildTable(table []uint32, lens []uint8, info []uint32, tableBits uint) bool {
	var count [16]uint16
	for _, l := range lens {
		count[l&15]++
		if l > 15 {
			return false
		}
	}
	count[0] = 0
	left := 1
	for l := 1; l <= 15; l++ {
		left <<= 1
		left -= int(count[l])
		if left < 0 {
			return false // over-subscribed
		}
	}
	var offs [16]uint16
	for l := 1; l < 15; l++ {
		offs[l+1] = offs[l] + count[l]
	}
	var sorted [maxLitSyms]uint16
	if len(lens) > len(sorted) {
		return false
	}
	for sym, l := range lens {
		if l != 0 {
			sorted[offs[l]] = uint16(sym)
			offs[l]++
		}
	}
	mainSize := 1 << tableBits
	if len(table) < mainSize {
		return false
	}
	if left > 0 {
		n := 0
		for _, c := range count {
			n += int(c)
		}
		if n > 1 || (n == 1 && count[1] != 1) {
			return false // incomplete
		}
		for i := range table[:mainSize] {
			table[i] = flagInvalid
		}
		if n == 1 {
			e := info[sorted[0]] + 1<<8 + 1
			for j := 0; j < mainSize; j += 2 {
				table[j] = e
			}
		}
		return true
	}

	// Complete code: walk the symbols in canonical order. Codewords no
	// longer than tableBits are written once each into a table that is
	// doubled (copying its first half) as the length grows, so that a
	// codeword of length l written at size 1<<l ends up replicated at
	// every index whose low l bits match. Entries not yet covered hold
	// stale data, but a complete code covers (or, for longer codewords,
	// points to a subtable from) every main table index by the end.
	idx := 0
	code := uint(0)
	cur := 0 // current table size; 0 until the first codeword
	for l := uint(1); l <= tableBits; l++ {
		if cur != 0 {
			for cur < 1<<l {
				copy(table[cur:2*cur], table[:cur])
				cur *= 2
			}
		} else if count[l] != 0 {
			cur = 1 << l
		}
		for c := count[l]; c > 0; c-- {
			sym := sorted[idx]
			idx++
			rev := uint(bits.Reverse16(uint16(code))) >> (16 - l)
			code++
			table[rev&uint(mainSize-1)] = info[sym] + uint32(l)<<8 + uint32(l)
		}
		code <<= 1
	}
	// cur == mainSize now, unless every codeword is longer than tableBits
	// (then every main table entry is a subtable pointer, set below).

	rem := count
	curPrefix := -1
	subStart, subBits := 0, uint(0)
	nextFree := mainSize
	for l := tableBits + 1; l <= 15; l++ {
		for c := count[l]; c > 0; c-- {
			sym := sorted[idx]
			idx++
			rev := uint(bits.Reverse16(uint16(code))) >> (16 - l)
			code++
			prefix := int(rev & uint(mainSize-1))
			if prefix != curPrefix {
				curPrefix = prefix
				sb := l - tableBits
				space := 1 << sb
				for sb+tableBits < 15 {
					space -= int(rem[sb+tableBits])
					if space <= 0 {
						break
					}
					sb++
					space <<= 1
				}
				subStart, subBits = nextFree, sb
				nextFree += 1 << sb
				if nextFree > len(table) {
					return false
				}
				table[prefix] = uint32(subStart)<<16 | flagSub | uint32(sb)<<8 | uint32(tableBits)
			}
			sl := l - tableBits
			e := info[sym] + uint32(sl)<<8 + uint32(sl)
			sub := table[subStart : subStart+1<<subBits]
			for j := rev >> tableBits; j < uint(len(sub)); j += 1 << sl {
				sub[j] = e
			}
			rem[l]--
		}
		code <<= 1
	}
	return true
}
