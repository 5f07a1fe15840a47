// Package lzo implements a safe decompressor for raw LZO1X streams, the
// format squashfs uses for "-comp lzo" blocks (produced by liblzo2's
// lzo1x_1 and lzo1x_999 compressors) and lzop uses for its blocks.
//
// The decoder is written from the published description of the LZO1X
// instruction encoding. It never reads outside src, never writes outside
// dst, never refers to bytes before the start of the output, never allocates,
// and every loop consumes input, so hostile input cannot make it panic or
// hang.
//
// # Stream format
//
// An LZO1X stream is a sequence of instructions. Each instruction is
// introduced by one byte; how that byte is read depends on a small state
// ("S") carried over from the previous instruction: the number of literal
// bytes copied right after it (0..3), or 4 after a literal run of four or
// more bytes. The stream starts in state 0.
//
// The first byte is special: if it is greater than 17, it encodes a literal
// run of byte-17 bytes (1..238) that follow it; the state becomes the run
// length if that is 1..3, otherwise 4. A first byte of 17 or less is an
// ordinary instruction.
//
// Ordinary instructions (H is the byte following the instruction byte; a
// "zero-extended" length field of n bits whose value is 0 is continued by
// any number of 0x00 bytes, each adding 255, then one non-zero byte that is
// added together with 2^n-1):
//
//	0000LLLL  state 0: literal run of 3+L bytes (L==0: 18 + extension).
//	          State becomes 4.
//	0000DDSS  state 1..3: 2-byte match, distance 1 + D + (H<<2).
//	0000DDSS  state 4: 3-byte match, distance 2049 + D + (H<<2).
//	01LDDDSS  M2: match of 3+L bytes, distance 1 + D + (H<<3).
//	1LLDDDSS  M2: match of 5+L bytes, distance 1 + D + (H<<3).
//	001LLLLL  M3: match of 2+L bytes (L==0: 33 + extension) followed by a
//	          little-endian 16-bit word DDDDDDDDDDDDDDSS; distance 1 + D.
//	0001HLLL  M4: match of 2+L bytes (L==0: 9 + extension) followed by a
//	          little-endian word DDDDDDDDDDDDDDSS; distance
//	          16384 + (H<<14) + D. A distance of exactly 16384 (H and D
//	          zero) is the end-of-stream marker; encoders emit it as
//	          0x11 0x00 0x00.
//
// After every match, SS (the low two bits of the instruction byte for the
// short forms, or of the first distance byte for M3/M4) gives the number of
// literal bytes (0..3) copied straight after the match, and becomes the
// state for the next instruction.
package lzo

import "encoding/binary"

// Error values. Every error returned by Decompress wraps ErrCorrupt
// (test with errors.Is); the concrete message says what was wrong.
var ErrCorrupt error = corruptError("lzo: corrupt input")

// corruptError is a constant error; the specific errors below are values of
// lzoError so that returning them never allocates.
type corruptError string

func (e corruptError) Error() string { return string(e) }

type lzoError struct{ msg string }

func (e *lzoError) Error() string { return "lzo: corrupt input: " + e.msg }
func (e *lzoError) Unwrap() error { return ErrCorrupt }

var (
	errInputOverrun  = &lzoError{"truncated input (no end-of-stream marker)"}
	errOutputOverrun = &lzoError{"output exceeds destination buffer"}
	errLookBehind    = &lzoError{"match distance beyond start of output"}
	errTrailing      = &lzoError{"trailing data after end-of-stream marker"}
	errBadEOF        = &lzoError{"malformed end-of-stream marker"}
)

// Decompress decodes the LZO1X stream src into dst and returns the number of
// bytes written. It fails with an error wrapping ErrCorrupt on malformed
// input, output overrun (would exceed len(dst)), lookbehind beyond the start
// of the output, or a missing end marker. The stream must end exactly at the
// end of src: bytes after the end-of-stream marker are an error, as in the
// Linux kernel's lzo1x_decompress_safe.
//
// On error, the returned count is the number of bytes decoded so far.
// Decompress never writes outside dst[:len(dst)], but to copy in whole
// machine words it may scribble on dst past the returned count: the
// contents of dst[n:] are unspecified after any call.
func Decompress(dst, src []byte) (int, error) {
	ip, op := 0, 0
	var state int // literals copied after the last instruction (0..3), or 4

	if len(src) == 0 {
		return 0, errInputOverrun
	}
	if src[0] > 17 {
		t := int(src[0]) - 17
		ip = 1
		if t > len(src)-ip {
			return op, errInputOverrun
		}
		if t > len(dst) {
			return op, errOutputOverrun
		}
		copy(dst[:t], src[ip:ip+t])
		ip += t
		op = t
		state = t
		if state > 4 {
			state = 4
		}
	}

	for {
		if ip >= len(src) {
			return op, errInputOverrun
		}
		t := int(src[ip])
		ip++

		var mlen, dist int // match length and distance
		var next int       // literals following the match (0..3)

		switch {
		case t >= 64:
			// M2: 01LDDDSS or 1LLDDDSS, then H.
			if ip >= len(src) {
				return op, errInputOverrun
			}
			dist = 1 + (t>>2)&7 + int(src[ip])<<3
			ip++
			mlen = t>>5 + 1
			next = t & 3

		case t >= 32:
			// M3: 001LLLLL [ext] DDDDDDDD DDDDDDSS
			mlen = t & 31
			if mlen == 0 {
				var err error
				mlen, ip, err = extLen(src, ip, 31, len(dst))
				if err != nil {
					return op, err
				}
			}
			mlen += 2
			if len(src)-ip < 2 {
				return op, errInputOverrun
			}
			w := int(src[ip]) | int(src[ip+1])<<8
			ip += 2
			dist = 1 + w>>2
			next = w & 3

		case t >= 16:
			// M4: 0001HLLL [ext] DDDDDDDD DDDDDDSS
			mlen = t & 7
			if mlen == 0 {
				var err error
				mlen, ip, err = extLen(src, ip, 7, len(dst))
				if err != nil {
					return op, err
				}
			}
			mlen += 2
			if len(src)-ip < 2 {
				return op, errInputOverrun
			}
			w := int(src[ip]) | int(src[ip+1])<<8
			ip += 2
			dist = (t&8)<<11 + w>>2
			if dist == 0 {
				// End of stream. Encoders emit exactly 0x11 0x00 0x00,
				// i.e. a length field of 1 (match length 3).
				if mlen != 3 {
					return op, errBadEOF
				}
				if ip != len(src) {
					return op, errTrailing
				}
				return op, nil
			}
			dist += 16384
			next = w & 3

		case state == 0:
			// Literal run: 0000LLLL [ext], then 3+L literals.
			if t == 0 {
				var err error
				t, ip, err = extLen(src, ip, 15, len(dst))
				if err != nil {
					return op, err
				}
			}
			t += 3
			if t > len(src)-ip {
				return op, errInputOverrun
			}
			if t > len(dst)-op {
				return op, errOutputOverrun
			}
			if t <= 16 && len(src)-ip >= 16 && len(dst)-op >= 16 {
				binary.LittleEndian.PutUint64(dst[op:], binary.LittleEndian.Uint64(src[ip:]))
				binary.LittleEndian.PutUint64(dst[op+8:], binary.LittleEndian.Uint64(src[ip+8:]))
			} else {
				copy(dst[op:op+t], src[ip:ip+t])
			}
			ip += t
			op += t
			state = 4
			continue

		default:
			// Short match 0000DDSS H: 2 bytes after a short literal run,
			// 3 bytes at distance 2049+ after a long one.
			if ip >= len(src) {
				return op, errInputOverrun
			}
			dist = 1 + t>>2 + int(src[ip])<<2
			ip++
			mlen = 2
			if state == 4 {
				dist += 2048
				mlen = 3
			}
			next = t & 3
		}

		// Copy the match.
		if dist > op {
			return op, errLookBehind
		}
		if mlen > len(dst)-op {
			return op, errOutputOverrun
		}
		m := op - dist
		if dist >= 8 && mlen <= 16 && len(dst)-op >= 16 {
			// Short match, common case: two word copies. Each word is
			// read after the bytes it depends on have been written (the
			// distance is at least 8); bytes written past op+mlen are
			// overwritten by later output.
			binary.LittleEndian.PutUint64(dst[op:], binary.LittleEndian.Uint64(dst[m:]))
			binary.LittleEndian.PutUint64(dst[op+8:], binary.LittleEndian.Uint64(dst[m+8:]))
			op += mlen
		} else if dist >= 8 && mlen <= 64 && len(dst)-op >= mlen+8 {
			end := op + mlen
			for ; op < end; op, m = op+8, m+8 {
				binary.LittleEndian.PutUint64(dst[op:], binary.LittleEndian.Uint64(dst[m:]))
			}
			op = end
		} else if dist >= mlen {
			copy(dst[op:op+mlen], dst[m:m+mlen])
			op += mlen
		} else {
			op = overlapCopy(dst, op, m, mlen)
		}

		// Trailing literals.
		state = next
		if next != 0 {
			if next > len(src)-ip {
				return op, errInputOverrun
			}
			if next > len(dst)-op {
				return op, errOutputOverrun
			}
			if len(src)-ip >= 4 && len(dst)-op >= 4 {
				binary.LittleEndian.PutUint32(dst[op:], binary.LittleEndian.Uint32(src[ip:]))
			} else {
				copy(dst[op:op+next], src[ip:ip+next])
			}
			ip += next
			op += next
		}
	}
}

// overlapCopy copies an overlapping match of length n from dst[m:] to
// dst[op:] (m < op, op-m < n, op+n <= len(dst)) and returns op+n. Bytes are
// replicated with a period of op-m.
func overlapCopy(dst []byte, op, m, n int) int {
	end := op + n
	if op-m == 1 {
		b := dst[m]
		d := dst[op:end]
		for i := range d {
			d[i] = b
		}
		return end
	}
	// Each copy doubles the replicated chunk, so this takes O(log n) calls.
	for op < end {
		c := copy(dst[op:end], dst[m:op])
		op += c
	}
	return end
}

// extLen decodes the continuation of a zero length field whose width gives
// the maximum value max (15, 31 or 7): zero bytes each adding 255, then a
// non-zero byte added to max. It returns the length, the new input position,
// and an error if the input ends or the length could not fit in limit bytes
// of output. The run of zero bytes is bounded by len(src).
func extLen(src []byte, ip, max, limit int) (int, int, error) {
	start := ip
	for ip < len(src) && src[ip] == 0 {
		ip++
	}
	if ip >= len(src) {
		return 0, ip, errInputOverrun
	}
	zeros := ip - start
	// Each zero byte adds 255; reject lengths that cannot fit the output
	// before multiplying, so the arithmetic never overflows.
	if zeros > limit/255+1 {
		return 0, ip, errOutputOverrun
	}
	n := zeros*255 + max + int(src[ip])
	ip++
	return n, ip, nil
}
