package xz

import (
	"encoding/binary"
	"testing"
)

// riscvEncode is the encoding direction of the RISC-V BCJ filter, ported
// from liblzma (simple/riscv.c, xz 5.6) so the decoder can be tested even
// though the installed xz (5.4) has no --riscv.
func riscvEncode(buf []byte, now uint32) {
	if len(buf) < 8 {
		return
	}
	last := len(buf) - 8
	for i := 0; i <= last; i += 2 {
		inst := uint32(buf[i])
		if inst == 0xEF {
			b1 := uint32(buf[i+1])
			if b1&0x0D != 0 {
				continue
			}
			b2 := uint32(buf[i+2])
			b3 := uint32(buf[i+3])
			pc := now + uint32(i)
			addr := (b1&0xF0)<<8 | (b2&0x0F)<<16 | (b2&0x10)<<7 | (b2&0xE0)>>4 | (b3&0x7F)<<4 | (b3&0x80)<<13
			addr += pc
			buf[i+1] = byte(b1&0x0F | (addr>>13)&0xF0)
			buf[i+2] = byte(addr >> 9)
			buf[i+3] = byte(addr >> 1)
			i += 4 - 2
		} else if inst&0x7F == 0x17 {
			inst |= uint32(buf[i+1])<<8 | uint32(buf[i+2])<<16 | uint32(buf[i+3])<<24
			if inst&0xE80 != 0 {
				inst2 := binary.LittleEndian.Uint32(buf[i+4:])
				if ((inst<<8)^(inst2-3))&0xF8003 != 0 {
					i += 6 - 2
					continue
				}
				addr := inst & 0xFFFFF000
				addr += inst2>>20 - (inst2>>19)&0x1000
				addr += now + uint32(i)
				inst = 0x17 | 2<<7 | inst2<<12
				binary.LittleEndian.PutUint32(buf[i:], inst)
				binary.BigEndian.PutUint32(buf[i+4:], addr)
			} else {
				fakeRS1 := inst >> 27
				if (inst-0x3117)<<18 >= fakeRS1&0x1D {
					i += 4 - 2
					continue
				}
				fakeAddr := binary.LittleEndian.Uint32(buf[i+4:])
				fakeInst2 := inst>>12 | fakeAddr<<20
				inst = 0x17 | fakeRS1<<7 | fakeAddr&0xFFFFF000
				binary.LittleEndian.PutUint32(buf[i:], inst)
				binary.LittleEndian.PutUint32(buf[i+4:], fakeInst2)
			}
			i += 8 - 2
		}
	}
}

// riscvLike returns data that is dense in JAL and AUIPC+inst2 pairs
// (including the special rd=x2 forms) mixed with random bytes.
func riscvLike(seed int64, n int) []byte {
	b := randomBytes(seed, n)
	r := randomBytes(seed+1000, n)
	for i := 0; i+8 <= n; i += 4 {
		switch r[i] % 6 {
		case 0: // JAL ra, imm
			b[i] = 0xEF
			b[i+1] = b[i+1]&0xF0 | 0x00
		case 1: // JAL t0
			b[i] = 0xEF
			b[i+1] = b[i+1]&0xF0 | 0x02
		case 2: // AUIPC a0 + ADDI a0, a0 (paired, rs1 == rd)
			rd := uint32(10)
			auipc := 0x17 | rd<<7 | binary.LittleEndian.Uint32(b[i:])&0xFFFFF000
			inst2 := 0x13 | rd<<7 | rd<<15 | binary.LittleEndian.Uint32(b[i+4:])&0xFFF00000
			binary.LittleEndian.PutUint32(b[i:], auipc)
			binary.LittleEndian.PutUint32(b[i+4:], inst2)
			i += 4
		case 3: // AUIPC with rd = x2 (the special/fake format)
			auipc := 0x17 | 2<<7 | binary.LittleEndian.Uint32(b[i:])&0xFFFFF000 | 0x3000
			binary.LittleEndian.PutUint32(b[i:], auipc)
			i += 4
		}
	}
	return b
}

func TestRISCVRoundTrip(t *testing.T) {
	for _, start := range []uint32{0, 2, 4096, 0xFFFFFFF0} {
		for _, n := range []int{0, 7, 8, 9, 100, 65536} {
			orig := riscvLike(int64(n)+int64(start), n)
			enc := append([]byte(nil), orig...)
			riscvEncode(enc, start)
			if n >= 4096 && string(enc) == string(orig) {
				t.Fatalf("start %d n %d: encoder changed nothing; test data is not RISC-V-like", start, n)
			}
			dec := append([]byte(nil), enc...)
			riscvDecode(dec, start)
			mustEqual(t, dec, orig)
		}
	}
}

// TestRISCVStream wraps RISC-V filtered data in a real .xz stream: LZMA2
// data from "xz --format=raw" with a RISC-V filter flag in the block header.
func TestRISCVStream(t *testing.T) {
	needXZ(t)
	orig := riscvLike(42, 100000)
	for _, start := range []uint32{0, 256} {
		enc := append([]byte(nil), orig...)
		riscvEncode(enc, start)
		raw := xzRun(t, enc, "--format=raw", "--lzma2=preset=6")
		var f []byte
		if start == 0 {
			f = []byte{0x0B, 0x00}
		} else {
			f = binary.LittleEndian.AppendUint32([]byte{0x0B, 0x04}, start)
		}
		src := lzma2StreamFilters(raw, len(orig), [][]byte{f})
		var d Decoder
		got, err := decodeXZ(t, &d, src, len(orig))
		if err != nil {
			t.Fatalf("start %d: DecodeXZ: %v", start, err)
		}
		mustEqual(t, got, orig)
	}
}
