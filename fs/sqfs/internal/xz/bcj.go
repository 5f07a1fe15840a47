package xz

import "encoding/binary"

// The branch/call/jump converters below are the decoding directions of the
// liblzma "simple" filters. liblzma runs them incrementally over a stream
// and leaves the last few (unconvertible) bytes unchanged at the end; since
// the whole block output is in memory here, each runs once over the whole
// buffer, which yields the same result.

// applyFilter undoes one non-LZMA2 filter in place.
func applyFilter(f filter, buf []byte) {
	switch f.id {
	case filterDelta:
		deltaDecode(buf, int(f.start))
	case filterX86:
		x86Decode(buf, f.start)
	case filterPowerPC:
		powerPCDecode(buf, f.start)
	case filterIA64:
		ia64Decode(buf, f.start)
	case filterARM:
		armDecode(buf, f.start)
	case filterARMThum:
		armThumbDecode(buf, f.start)
	case filterSPARC:
		sparcDecode(buf, f.start)
	case filterARM64:
		arm64Decode(buf, f.start)
	case filterRISCV:
		riscvDecode(buf, f.start)
	}
}

// deltaDecode undoes the Delta filter: out[i] = in[i] + out[i-dist], with
// zero history before the start.
func deltaDecode(buf []byte, dist int) {
	for i := dist; i < len(buf); i++ {
		buf[i] += buf[i-dist]
	}
}

func x86Decode(buf []byte, now uint32) {
	if len(buf) < 5 {
		return
	}
	maskToAllowed := [8]bool{true, true, true, false, true, false, false, false}
	maskToBitNum := [8]uint32{0, 1, 2, 2, 3, 3, 3, 3}
	test86MSByte := func(b byte) bool { return (b+1)&0xFE == 0 }

	prevMask := uint32(0)
	prevPos := now - 5
	limit := len(buf) - 5
	for i := 0; i <= limit; {
		b := buf[i]
		if b != 0xE8 && b != 0xE9 {
			i++
			continue
		}
		offset := now + uint32(i) - prevPos
		prevPos = now + uint32(i)
		if offset > 5 {
			prevMask = 0
		} else {
			for k := uint32(0); k < offset; k++ {
				prevMask &= 0x77
				prevMask <<= 1
			}
		}
		b = buf[i+4]
		if test86MSByte(b) && maskToAllowed[(prevMask>>1)&7] && prevMask>>1 < 0x10 {
			src := uint32(b)<<24 | uint32(buf[i+3])<<16 | uint32(buf[i+2])<<8 | uint32(buf[i+1])
			var dest uint32
			for {
				dest = src - (now + uint32(i) + 5)
				if prevMask == 0 {
					break
				}
				idx := maskToBitNum[(prevMask>>1)&7]
				b = byte(dest >> (24 - idx*8))
				if !test86MSByte(b) {
					break
				}
				src = dest ^ (1<<(32-idx*8) - 1)
			}
			buf[i+4] = ^byte((dest>>24)&1 - 1)
			buf[i+3] = byte(dest >> 16)
			buf[i+2] = byte(dest >> 8)
			buf[i+1] = byte(dest)
			i += 5
			prevMask = 0
		} else {
			i++
			prevMask |= 1
			if test86MSByte(b) {
				prevMask |= 0x10
			}
		}
	}
}

func powerPCDecode(buf []byte, now uint32) {
	for i := 0; i+4 <= len(buf); i += 4 {
		if buf[i]>>2 == 0x12 && buf[i+3]&3 == 1 {
			src := uint32(buf[i]&3)<<24 | uint32(buf[i+1])<<16 | uint32(buf[i+2])<<8 | uint32(buf[i+3]&^3)
			dest := src - (now + uint32(i))
			buf[i] = 0x48 | byte(dest>>24)&0x03
			buf[i+1] = byte(dest >> 16)
			buf[i+2] = byte(dest >> 8)
			buf[i+3] = buf[i+3]&0x03 | byte(dest)
		}
	}
}

func ia64Decode(buf []byte, now uint32) {
	branchTable := [32]uint32{
		0, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0,
		4, 4, 6, 6, 0, 0, 7, 7,
		4, 4, 0, 0, 4, 4, 0, 0,
	}
	for i := 0; i+16 <= len(buf); i += 16 {
		mask := branchTable[buf[i]&0x1F]
		bitPos := uint32(5)
		for slot := uint32(0); slot < 3; slot, bitPos = slot+1, bitPos+41 {
			if (mask>>slot)&1 == 0 {
				continue
			}
			bytePos := int(bitPos >> 3)
			bitRes := bitPos & 7
			var instr uint64
			for j := 0; j < 6; j++ {
				instr |= uint64(buf[i+j+bytePos]) << (8 * j)
			}
			norm := instr >> bitRes
			if (norm>>37)&0xF == 0x5 && (norm>>9)&0x7 == 0 {
				src := uint32((norm >> 13) & 0xFFFFF)
				src |= uint32((norm>>36)&1) << 20
				src <<= 4
				dest := src - (now + uint32(i))
				dest >>= 4
				norm &^= uint64(0x8FFFFF) << 13
				norm |= uint64(dest&0xFFFFF) << 13
				norm |= uint64(dest&0x100000) << (36 - 20)
				instr &= 1<<bitRes - 1
				instr |= norm << bitRes
				for j := 0; j < 6; j++ {
					buf[i+j+bytePos] = byte(instr >> (8 * j))
				}
			}
		}
	}
}

func armDecode(buf []byte, now uint32) {
	for i := 0; i+4 <= len(buf); i += 4 {
		if buf[i+3] == 0xEB {
			src := (uint32(buf[i+2])<<16 | uint32(buf[i+1])<<8 | uint32(buf[i])) << 2
			dest := (src - (now + uint32(i) + 8)) >> 2
			buf[i+2] = byte(dest >> 16)
			buf[i+1] = byte(dest >> 8)
			buf[i] = byte(dest)
		}
	}
}

func armThumbDecode(buf []byte, now uint32) {
	for i := 0; i+4 <= len(buf); i += 2 {
		if buf[i+1]&0xF8 == 0xF0 && buf[i+3]&0xF8 == 0xF8 {
			src := (uint32(buf[i+1]&7)<<19 | uint32(buf[i])<<11 | uint32(buf[i+3]&7)<<8 | uint32(buf[i+2])) << 1
			dest := (src - (now + uint32(i) + 4)) >> 1
			buf[i+1] = 0xF0 | byte(dest>>19)&0x7
			buf[i] = byte(dest >> 11)
			buf[i+3] = 0xF8 | byte(dest>>8)&0x7
			buf[i+2] = byte(dest)
			i += 2
		}
	}
}

func sparcDecode(buf []byte, now uint32) {
	for i := 0; i+4 <= len(buf); i += 4 {
		if (buf[i] == 0x40 && buf[i+1]&0xC0 == 0x00) || (buf[i] == 0x7F && buf[i+1]&0xC0 == 0xC0) {
			src := binary.BigEndian.Uint32(buf[i:]) << 2
			dest := (src - (now + uint32(i))) >> 2
			dest = ((0-(dest>>22)&1)<<22)&0x3FFFFFFF | dest&0x3FFFFF | 0x40000000
			binary.BigEndian.PutUint32(buf[i:], dest)
		}
	}
}

func arm64Decode(buf []byte, now uint32) {
	for i := 0; i+4 <= len(buf); i += 4 {
		pc := now + uint32(i)
		instr := binary.LittleEndian.Uint32(buf[i:])
		if instr>>26 == 0x25 {
			// BL
			src := instr
			pc = 0 - pc>>2
			binary.LittleEndian.PutUint32(buf[i:], 0x94000000|(src+pc)&0x03FFFFFF)
		} else if instr&0x9F000000 == 0x90000000 {
			// ADRP
			src := (instr>>29)&3 | (instr>>3)&0x001FFFFC
			if (src+0x00020000)&0x001C0000 != 0 {
				continue
			}
			instr &= 0x9000001F
			pc = 0 - pc>>12
			dest := src + pc
			instr |= (dest & 3) << 29
			instr |= (dest & 0x0003FFFC) << 3
			instr |= (0 - dest&0x00020000) & 0x00E00000
			binary.LittleEndian.PutUint32(buf[i:], instr)
		}
	}
}

// riscvDecode undoes the RISC-V BCJ filter (xz 5.6 and later).
func riscvDecode(buf []byte, now uint32) {
	if len(buf) < 8 {
		return
	}
	last := len(buf) - 8
	for i := 0; i <= last; i += 2 {
		inst := uint32(buf[i])
		if inst == 0xEF {
			// JAL; only rd=x1(ra) and rd=x5(t0) are filtered.
			b1 := uint32(buf[i+1])
			if b1&0x0D != 0 {
				continue
			}
			b2 := uint32(buf[i+2])
			b3 := uint32(buf[i+3])
			pc := now + uint32(i)
			addr := (b1&0xF0)<<13 | b2<<9 | b3<<1
			addr -= pc
			buf[i+1] = byte(b1&0x0F | (addr>>8)&0xF0)
			buf[i+2] = byte((addr>>16)&0x0F | (addr>>7)&0x10 | (addr<<4)&0xE0)
			buf[i+3] = byte((addr>>4)&0x7F | (addr>>13)&0x80)
			i += 4 - 2
		} else if inst&0x7F == 0x17 {
			// AUIPC
			var inst2 uint32
			inst |= uint32(buf[i+1])<<8 | uint32(buf[i+2])<<16 | uint32(buf[i+3])<<24
			if inst&0xE80 != 0 {
				// rd is neither x0 nor x2: a "fake" pair stored as is.
				inst2 = binary.LittleEndian.Uint32(buf[i+4:])
				if ((inst<<8)^(inst2-3))&0xF8003 != 0 {
					i += 6 - 2
					continue
				}
				addr := inst&0xFFFFF000 + inst2>>20
				inst = 0x17 | 2<<7 | inst2<<12
				inst2 = addr
			} else {
				// rd is x0 or x2: possibly the encoder's special format.
				rs1 := inst >> 27
				if (inst-0x3117)<<18 >= rs1&0x1D {
					i += 4 - 2
					continue
				}
				addr := binary.BigEndian.Uint32(buf[i+4:])
				addr -= now + uint32(i)
				inst2 = inst>>12 | addr<<20
				inst = 0x17 | rs1<<7 | (addr+0x800)&0xFFFFF000
			}
			binary.LittleEndian.PutUint32(buf[i:], inst)
			binary.LittleEndian.PutUint32(buf[i+4:], inst2)
			i += 8 - 2
		}
	}
}
