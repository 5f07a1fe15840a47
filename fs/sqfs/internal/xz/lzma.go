package xz

// This file holds the LZMA decoder core shared by the LZMA2 (.xz) and the
// legacy "lzma alone" paths.
//
// The whole decompressed output lives in the caller's buffer, so the LZ
// window is simply the output written since the last dictionary reset: there is no circular dictionary.
// The range decoder state lives in local variables inside run and every
// bit decode is written so that the compiler inlines it (see rcBit).

const (
	numStates      = 12
	probInit       = 1024 // 1 << (kNumBitModelTotalBits-1)
	endPosModelIdx = 14
	matchMinLen    = 2
	// lzma alone stores this as the uncompressed size when it is unknown.
	unknownSize = ^uint64(0)
)

// lenCoder holds the probabilities of one length decoder. Array sizes are
// powers of two so that masked indices need no bounds checks.
type lenCoder struct {
	choice [2]uint16
	low    [16][8]uint16
	mid    [16][8]uint16
	high   [256]uint16
}

// Decoder holds reusable probability tables; one per goroutine (callers
// pool them). The zero value is ready to use.
type Decoder struct {
	// Literal coders. liblzma uses 0x300 entries per coder; the stride here
	// is 0x400 so that (index & 0x3FF) is provably in range. lc+lp <= 4 so
	// there are at most 16 coders.
	lit        [16][0x400]uint16
	isMatch    [256]uint16 // state<<4 | posState
	isRep0Long [256]uint16 // state<<4 | posState
	isRep      [16]uint16
	isRepG0    [16]uint16
	isRepG1    [16]uint16
	isRepG2    [16]uint16
	posSlot    [4][64]uint16
	posSpecial [128]uint16 // 114 used
	align      [16]uint16
	matchLen   lenCoder
	repLen     lenCoder

	// LZMA state carried across LZMA2 chunks.
	state                  uint32
	rep0, rep1, rep2, rep3 uint32
	lc, lp, pb             uint32

	// Range decoder state between run calls.
	rng, code uint32
}

// setProps sets lc/lp/pb; the caller validated them (lc+lp <= 4, pb <= 4).
func (d *Decoder) setProps(lc, lp, pb uint32) {
	d.lc, d.lp, d.pb = lc, lp, pb
}

// decodeProps splits an LZMA properties byte into lc, lp and pb.
func decodeProps(b byte) (lc, lp, pb uint32, err error) {
	if b >= 9*5*5 {
		return 0, 0, 0, corruptf("invalid LZMA properties byte 0x%02x", b)
	}
	v := uint32(b)
	lc = v % 9
	v /= 9
	lp = v % 5
	pb = v / 5
	if lc+lp > 4 {
		return 0, 0, 0, unsupportedf("LZMA properties lc=%d lp=%d (lc+lp > 4)", lc, lp)
	}
	return lc, lp, pb, nil
}

func resetProbs(p []uint16) {
	for i := range p {
		p[i] = probInit
	}
}

func (l *lenCoder) reset() {
	l.choice = [2]uint16{probInit, probInit}
	for i := range l.low {
		resetProbs(l.low[i][:])
		resetProbs(l.mid[i][:])
	}
	resetProbs(l.high[:])
}

// resetState resets the probabilities and the LZMA state (not the range
// decoder). Only the literal coders that lc/lp can select are reset.
func (d *Decoder) resetState() {
	n := 1 << (d.lc + d.lp)
	for i := 0; i < n; i++ {
		resetProbs(d.lit[i][:0x300])
	}
	resetProbs(d.isMatch[:])
	resetProbs(d.isRep0Long[:])
	resetProbs(d.isRep[:])
	resetProbs(d.isRepG0[:])
	resetProbs(d.isRepG1[:])
	resetProbs(d.isRepG2[:])
	for i := range d.posSlot {
		resetProbs(d.posSlot[i][:])
	}
	resetProbs(d.posSpecial[:])
	resetProbs(d.align[:])
	d.matchLen.reset()
	d.repLen.reset()
	d.state = 0
	d.rep0, d.rep1, d.rep2, d.rep3 = 0, 0, 0, 0
}

// initRC starts the range decoder on in and returns the number of bytes
// consumed (always 5).
func (d *Decoder) initRC(in []byte) (int, error) {
	if len(in) < 5 {
		return 0, corruptf("range coder needs 5 bytes, have %d", len(in))
	}
	if in[0] != 0 {
		return 0, corruptf("range coder first byte is 0x%02x, want 0x00", in[0])
	}
	d.rng = 0xFFFFFFFF
	d.code = uint32(in[1])<<24 | uint32(in[2])<<16 | uint32(in[3])<<8 | uint32(in[4])
	if d.code == d.rng {
		return 0, corruptf("range coder initial code 0xFFFFFFFF")
	}
	return 5, nil
}

// rcBit decodes one bit with the probability *p. It normalizes first (as
// the LZMA SDK does) and never reads past len(in): missing input reads as
// zero and ipos keeps counting so the caller can detect truncation. It is
// small enough to be inlined.
func rcBit(p *uint16, rng, code uint32, in []byte, ipos int) (uint32, uint32, int, uint32) {
	if rng < 1<<24 {
		rng <<= 8
		code <<= 8
		if uint(ipos) < uint(len(in)) {
			code |= uint32(in[ipos])
		}
		ipos++
	}
	v := uint32(*p)
	bound := (rng >> 11) * v
	if code < bound {
		*p = uint16(v + (2048-v)>>5)
		return bound, code, ipos, 0
	}
	*p = uint16(v - v>>5)
	return rng - bound, code - bound, ipos, 1
}

// rcBitNB decodes one bit like rcBit but without data-dependent branches:
// it trades a longer dependency chain for no mispredictions, which pays off
// for the poorly predictable bits of literals, lengths and distances. The
// caller normalizes first (rcNorm); the split keeps both functions within
// the inlining budget.
func rcBitNB(p *uint16, rng, code uint32) (uint32, uint32, uint32) {
	v := uint32(*p)
	bound := (rng >> 11) * v
	var bit uint32
	if code >= bound {
		bit = 1
	}
	mask := -bit
	// bit 0: v += (2048-v)>>5; bit 1: v -= v>>5. Both are v + (t-v)>>5
	// (arithmetic shift) with t = 2048 or t = 31.
	*p = uint16(v + uint32(int32(2048-2017&mask-v)>>5))
	return bound + (rng-2*bound)&mask, code - bound&mask, bit
}

// rcNorm performs the final normalization at the end of a chunk or stream.
func rcNorm(rng, code uint32, in []byte, ipos int) (uint32, uint32, int) {
	if rng < 1<<24 {
		rng <<= 8
		code <<= 8
		if uint(ipos) < uint(len(in)) {
			code |= uint32(in[ipos])
		}
		ipos++
	}
	return rng, code, ipos
}

// litNextState maps the state after a literal.
var litNextState = [16]uint8{0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 4, 5}

// run decodes LZMA symbols from in[ipos:] into dst[dpos:], where dst has
// already been sliced to the limit of this call (chunk end, known size or
// the caller's buffer) and starts at the last dictionary reset, so the
// window is dst[:dpos]. If eopm is set, decoding continues at the limit to
// accept an end-of-payload marker, and an end marker before the limit is
// accepted too. It returns the new dpos and ipos and whether the end marker
// was seen. The range coder state is taken from and stored back into d.
func (d *Decoder) run(dst []byte, dpos int, in []byte, ipos int, eopm bool) (int, int, bool, error) {
	rng, code := d.rng, d.code
	state := d.state
	rep0 := d.rep0
	lc := d.lc & 15
	lpMask := uint32(1)<<d.lp - 1
	pbMask := uint32(1)<<d.pb - 1
	var (
		b       uint32
		sawEOPM bool
		err     error
	)
	for {
		if dpos >= len(dst) && !eopm {
			break
		}
		pos := uint32(dpos)
		posState := pos & pbMask
		rng, code, ipos, b = rcBit(&d.isMatch[(state<<4|posState)&255], rng, code, in, ipos)
		if b == 0 {
			// Literal.
			if uint(dpos) >= uint(len(dst)) {
				err = corruptf("output would exceed %d bytes (literal)", len(dst))
				break
			}
			prev := uint32(0)
			if dpos > 0 {
				prev = uint32(dst[dpos-1])
			}
			probs := &d.lit[((pos&lpMask)<<lc+prev>>(8-lc))&15]
			sym := uint32(1)
			if state < 7 {
				// Unrolled 8-bit tree.
				rng, code, ipos = rcNorm(rng, code, in, ipos)
				rng, code, b = rcBitNB(&probs[1], rng, code)
				sym = 2 | b
				rng, code, ipos = rcNorm(rng, code, in, ipos)
				rng, code, b = rcBitNB(&probs[sym&0x3FF], rng, code)
				sym = sym<<1 | b
				rng, code, ipos = rcNorm(rng, code, in, ipos)
				rng, code, b = rcBitNB(&probs[sym&0x3FF], rng, code)
				sym = sym<<1 | b
				rng, code, ipos = rcNorm(rng, code, in, ipos)
				rng, code, b = rcBitNB(&probs[sym&0x3FF], rng, code)
				sym = sym<<1 | b
				rng, code, ipos = rcNorm(rng, code, in, ipos)
				rng, code, b = rcBitNB(&probs[sym&0x3FF], rng, code)
				sym = sym<<1 | b
				rng, code, ipos = rcNorm(rng, code, in, ipos)
				rng, code, b = rcBitNB(&probs[sym&0x3FF], rng, code)
				sym = sym<<1 | b
				rng, code, ipos = rcNorm(rng, code, in, ipos)
				rng, code, b = rcBitNB(&probs[sym&0x3FF], rng, code)
				sym = sym<<1 | b
				rng, code, ipos = rcNorm(rng, code, in, ipos)
				rng, code, b = rcBitNB(&probs[sym&0x3FF], rng, code)
				sym = sym<<1 | b
			} else {
				mb := uint32(dst[dpos-int(rep0)-1])
				offset := uint32(0x100)
				for sym < 0x100 {
					mb <<= 1
					mbit := mb & offset
					rng, code, ipos = rcNorm(rng, code, in, ipos)
					rng, code, b = rcBitNB(&probs[(offset+mbit+sym)&0x3FF], rng, code)
					sym = sym<<1 | b
					// Keep offset while the literal still agrees with the match
					// byte; drop to plain decoding once they differ.
					offset &= mbit ^ (b - 1)
				}
			}
			dst[dpos] = byte(sym)
			dpos++
			state = uint32(litNextState[state&15])
			continue
		}

		// Match or repeated match.
		var lenc *lenCoder
		isMatch := false
		rng, code, ipos, b = rcBit(&d.isRep[state&15], rng, code, in, ipos)
		if b == 0 {
			isMatch = true
			d.rep3, d.rep2, d.rep1 = d.rep2, d.rep1, rep0
			lenc = &d.matchLen
			if state < 7 {
				state = 7
			} else {
				state = 10
			}
		} else {
			rng, code, ipos, b = rcBit(&d.isRepG0[state&15], rng, code, in, ipos)
			if b == 0 {
				rng, code, ipos, b = rcBit(&d.isRep0Long[(state<<4|posState)&255], rng, code, in, ipos)
				if b == 0 {
					// Short rep: one byte at distance rep0.
					if state < 7 {
						state = 9
					} else {
						state = 11
					}
					if int(rep0) >= dpos {
						err = distErr(rep0, dpos)
						break
					}
					if uint(dpos) >= uint(len(dst)) {
						err = corruptf("output would exceed %d bytes (short rep)", len(dst))
						break
					}
					dst[dpos] = dst[dpos-int(rep0)-1]
					dpos++
					continue
				}
			} else {
				var dist uint32
				rng, code, ipos, b = rcBit(&d.isRepG1[state&15], rng, code, in, ipos)
				if b == 0 {
					dist = d.rep1
				} else {
					rng, code, ipos, b = rcBit(&d.isRepG2[state&15], rng, code, in, ipos)
					if b == 0 {
						dist = d.rep2
					} else {
						dist = d.rep3
						d.rep3 = d.rep2
					}
					d.rep2 = d.rep1
				}
				d.rep1 = rep0
				rep0 = dist
			}
			lenc = &d.repLen
			if state < 7 {
				state = 8
			} else {
				state = 11
			}
		}

		// Length.
		var length uint32
		rng, code, ipos, b = rcBit(&lenc.choice[0], rng, code, in, ipos)
		if b == 0 {
			probs := &lenc.low[posState&15]
			rng, code, ipos = rcNorm(rng, code, in, ipos)
			rng, code, b = rcBitNB(&probs[1], rng, code)
			sym := 2 | b
			rng, code, ipos = rcNorm(rng, code, in, ipos)
			rng, code, b = rcBitNB(&probs[sym&7], rng, code)
			sym = sym<<1 | b
			rng, code, ipos = rcNorm(rng, code, in, ipos)
			rng, code, b = rcBitNB(&probs[sym&7], rng, code)
			length = (sym<<1 | b) - 8
		} else {
			rng, code, ipos, b = rcBit(&lenc.choice[1], rng, code, in, ipos)
			if b == 0 {
				probs := &lenc.mid[posState&15]
				rng, code, ipos = rcNorm(rng, code, in, ipos)
				rng, code, b = rcBitNB(&probs[1], rng, code)
				sym := 2 | b
				rng, code, ipos = rcNorm(rng, code, in, ipos)
				rng, code, b = rcBitNB(&probs[sym&7], rng, code)
				sym = sym<<1 | b
				rng, code, ipos = rcNorm(rng, code, in, ipos)
				rng, code, b = rcBitNB(&probs[sym&7], rng, code)
				length = sym<<1 | b
			} else {
				sym := uint32(1)
				for sym < 0x100 {
					rng, code, ipos = rcNorm(rng, code, in, ipos)
					rng, code, b = rcBitNB(&lenc.high[sym&0xFF], rng, code)
					sym = sym<<1 | b
				}
				length = sym - 0x100 + 16
			}
		}

		if isMatch {
			// Distance.
			lenState := length
			if lenState > 3 {
				lenState = 3
			}
			probs := &d.posSlot[lenState]
			rng, code, ipos = rcNorm(rng, code, in, ipos)
			rng, code, b = rcBitNB(&probs[1], rng, code)
			sym := 2 | b
			rng, code, ipos = rcNorm(rng, code, in, ipos)
			rng, code, b = rcBitNB(&probs[sym&63], rng, code)
			sym = sym<<1 | b
			rng, code, ipos = rcNorm(rng, code, in, ipos)
			rng, code, b = rcBitNB(&probs[sym&63], rng, code)
			sym = sym<<1 | b
			rng, code, ipos = rcNorm(rng, code, in, ipos)
			rng, code, b = rcBitNB(&probs[sym&63], rng, code)
			sym = sym<<1 | b
			rng, code, ipos = rcNorm(rng, code, in, ipos)
			rng, code, b = rcBitNB(&probs[sym&63], rng, code)
			sym = sym<<1 | b
			rng, code, ipos = rcNorm(rng, code, in, ipos)
			rng, code, b = rcBitNB(&probs[sym&63], rng, code)
			slot := (sym<<1 | b) - 64
			if slot < 4 {
				rep0 = slot
			} else {
				nb := slot>>1 - 1
				dist := (2 | slot&1) << nb
				if slot < endPosModelIdx {
					base := dist - slot - 1
					m := uint32(1)
					for i := uint32(0); i < nb; i++ {
						rng, code, ipos = rcNorm(rng, code, in, ipos)
						rng, code, b = rcBitNB(&d.posSpecial[(base+m)&127], rng, code)
						m = m<<1 | b
						dist |= b << i
					}
				} else {
					var direct uint32
					for n := nb - 4; n > 0; n-- {
						rng, code, ipos = rcNorm(rng, code, in, ipos)
						rng >>= 1
						code -= rng
						t := 0 - code>>31
						code += rng & t
						direct = direct<<1 + (t + 1)
					}
					dist += direct << 4
					rng, code, ipos = rcNorm(rng, code, in, ipos)
					rng, code, b = rcBitNB(&d.align[1], rng, code)
					m := 2 | b
					dist |= b
					rng, code, ipos = rcNorm(rng, code, in, ipos)
					rng, code, b = rcBitNB(&d.align[m&15], rng, code)
					m = m<<1 | b
					dist |= b << 1
					rng, code, ipos = rcNorm(rng, code, in, ipos)
					rng, code, b = rcBitNB(&d.align[m&15], rng, code)
					m = m<<1 | b
					dist |= b << 2
					rng, code, ipos = rcNorm(rng, code, in, ipos)
					rng, code, b = rcBitNB(&d.align[m&15], rng, code)
					dist |= b << 3
				}
				rep0 = dist
				if dist == 0xFFFFFFFF {
					if !eopm {
						err = corruptf("unexpected end marker at %d bytes of output", dpos)
					} else {
						sawEOPM = true
					}
					break
				}
			}
		}

		// Copy the match.
		n := int(length) + matchMinLen
		if int(rep0) >= dpos {
			err = distErr(rep0, dpos)
			break
		}
		if n > len(dst)-dpos {
			err = corruptf("match of length %d at %d would exceed the output limit %d", n, dpos, len(dst))
			break
		}
		dist := int(rep0) + 1
		src := dpos - dist
		if n <= 16 {
			// Short matches dominate; a byte loop beats a memmove call and
			// is correct for overlapping matches too.
			s := dst[src : src+n]
			t := dst[dpos : dpos+n]
			for i := range t {
				t[i] = s[i]
			}
		} else if dist >= n {
			copy(dst[dpos:dpos+n], dst[src:src+n])
		} else if dist == 1 {
			c := dst[src]
			s := dst[dpos : dpos+n]
			for i := range s {
				s[i] = c
			}
		} else {
			// Overlapping: each copy doubles the replicated run.
			end := dpos + n
			for w := dpos; w < end; {
				w += copy(dst[w:end], dst[src:w])
			}
		}
		dpos += n
	}
	d.rng, d.code = rng, code
	d.state = state
	d.rep0 = rep0
	return dpos, ipos, sawEOPM, err
}
