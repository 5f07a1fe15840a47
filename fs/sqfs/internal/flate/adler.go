package flate

import "encoding/binary"

const (
	adlerMod = 65521
	// adlerNMax is zlib's NMAX, the largest n for which the sums of n bytes
	// cannot overflow 32 bits before being reduced; a chunk of 43 blocks of
	// 128 bytes (5504 bytes) stays within it.
	adlerNMax  = 5552
	adlerBlock = 128
	adlerChunk = adlerNMax / adlerBlock * adlerBlock

	lanes16 = 0x00ff00ff00ff00ff
	lanes32 = 0x0000ffff0000ffff
)

// adler32 updates the Adler-32 checksum adler with p.
//
// The input is processed in chunks of at most adlerNMax bytes, reducing the
// sums modulo 65521 once per chunk, and within a chunk in blocks of 128
// bytes, 8 bytes at a time with SWAR arithmetic: each little-endian word is
// split into its even and odd bytes as four 16-bit lanes each; ae/ao
// accumulate the per-position byte sums and be/bo the running sums of
// ae/ao, from which the block's contribution to s2 follows:
//
//	s2 += 128*s1 + 8*Σ_k (15-k)*sum(word k) + Σ_i (8-i)*sum(byte i of each word)
//
// No 16-bit lane can overflow within a block (ae <= 16*255, be <= 120*255).
func adler32(adler uint32, p []byte) uint32 {
	s1, s2 := uint64(adler&0xffff), uint64(adler>>16)
	for len(p) >= adlerBlock {
		n := len(p) &^ (adlerBlock - 1)
		if n > adlerChunk {
			n = adlerChunk
		}
		chunk := p[:n]
		p = p[n:]
		for len(chunk) >= adlerBlock {
			b := (*[adlerBlock]byte)(chunk)
			var ae, ao, be, bo uint64
			for k := 0; k < adlerBlock; k += 32 {
				w0 := binary.LittleEndian.Uint64(b[k:])
				w1 := binary.LittleEndian.Uint64(b[k+8:])
				w2 := binary.LittleEndian.Uint64(b[k+16:])
				w3 := binary.LittleEndian.Uint64(b[k+24:])
				be += ae
				bo += ao
				ae += w0 & lanes16
				ao += w0 >> 8 & lanes16
				be += ae
				bo += ao
				ae += w1 & lanes16
				ao += w1 >> 8 & lanes16
				be += ae
				bo += ao
				ae += w2 & lanes16
				ao += w2 >> 8 & lanes16
				be += ae
				bo += ao
				ae += w3 & lanes16
				ao += w3 >> 8 & lanes16
			}
			chunk = chunk[adlerBlock:]
			// Horizontal sums (32-bit lanes, then the two halves).
			bs := (be+bo)&lanes32 + (be+bo)>>16&lanes32
			bs = (bs + bs>>32) & 0xffffffff
			as := ((ae + ao) * 0x0001000100010001) >> 48
			// Position weights 8,6,4,2 (even bytes) and 7,5,3,1 (odd):
			// (x * (c0<<32 | c1)) >> 32 = lane0*c0 + lane2*c1 for 32-bit lanes.
			ws := ((ae&lanes32)*(8<<32|4))>>32 + ((ae>>16&lanes32)*(6<<32|2))>>32 +
				((ao&lanes32)*(7<<32|3))>>32 + ((ao>>16&lanes32)*(5<<32|1))>>32
			s2 += adlerBlock*s1 + 8*bs + ws
			s1 += as
		}
		s1 %= adlerMod
		s2 %= adlerMod
	}
	for _, c := range p {
		s1 += uint64(c)
		s2 += s1
	}
	s1 %= adlerMod
	s2 %= adlerMod
	return uint32(s2<<16 | s1)
}
