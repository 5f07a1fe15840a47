package lzo

// A minimal squashfs 4.0 reader, just enough to find every regular file's
// data blocks in an image made with "mksquashfs -comp lzo -no-fragments" and
// decode them (and the metadata blocks on the way) with Decompress.

import (
	"encoding/binary"
	"testing"
)

const metaBlockSize = 8192

// readMeta decodes the metadata block at pos and returns it and the
// position of the next one.
func readMeta(tb testing.TB, img []byte, pos int) ([]byte, int) {
	tb.Helper()
	if pos+2 > len(img) {
		tb.Fatalf("metadata block header at %d beyond image", pos)
	}
	h := binary.LittleEndian.Uint16(img[pos:])
	size := int(h & 0x7fff)
	pos += 2
	if pos+size > len(img) {
		tb.Fatalf("metadata block at %d (%d bytes) beyond image", pos, size)
	}
	raw := img[pos : pos+size]
	if h&0x8000 != 0 {
		return raw, pos + size
	}
	buf := make([]byte, metaBlockSize)
	n, err := Decompress(buf, raw)
	if err != nil {
		tb.Fatalf("metadata block at %d (%d bytes): Decompress: %v", pos-2, size, err)
	}
	return buf[:n], pos + size
}

// decodeSquashfs returns the contents of every regular file in img,
// decoding all data blocks with Decompress.
func decodeSquashfs(tb testing.TB, img []byte) [][]byte {
	tb.Helper()
	if len(img) < 96 || string(img[:4]) != "hsqs" {
		tb.Fatalf("not a squashfs image")
	}
	le32 := func(b []byte, o int) int { return int(binary.LittleEndian.Uint32(b[o:])) }
	le16 := func(b []byte, o int) int { return int(binary.LittleEndian.Uint16(b[o:])) }
	inodeCount := le32(img, 4)
	blockSize := le32(img, 12)
	if c := le16(img, 20); c != 3 {
		tb.Fatalf("compressor id %d, want 3 (lzo)", c)
	}
	flags := le16(img, 24)
	inodeStart := int(binary.LittleEndian.Uint64(img[64:]))
	dirStart := int(binary.LittleEndian.Uint64(img[72:]))
	if flags&0x0400 != 0 {
		opts, _ := readMeta(tb, img, 96)
		if len(opts) != 8 {
			tb.Fatalf("lzo compressor options are %d bytes, want 8", len(opts))
		}
		tb.Logf("lzo compressor options: algorithm %d level %d", le32(opts, 0), le32(opts, 4))
	}

	var inodes []byte
	metaBlocks := 0
	for pos := inodeStart; pos < dirStart; {
		var m []byte
		m, pos = readMeta(tb, img, pos)
		inodes = append(inodes, m...)
		metaBlocks++
	}

	var files [][]byte
	compressed := 0
	readFile := func(start, size, frag int, sizes []byte) {
		if frag != -1 && frag != 0xffffffff {
			tb.Fatalf("file uses a fragment despite -no-fragments")
		}
		data := make([]byte, 0, size)
		pos := start
		for i := 0; i+4 <= len(sizes); i += 4 {
			w := le32(sizes, i)
			bs := w & 0xffffff
			want := min(blockSize, size-len(data))
			switch {
			case bs == 0: // sparse block
				data = append(data, make([]byte, want)...)
			case w&(1<<24) != 0: // stored uncompressed
				data = append(data, img[pos:pos+bs]...)
			default:
				buf := make([]byte, blockSize)
				n, err := Decompress(buf, img[pos:pos+bs])
				if err != nil {
					tb.Fatalf("data block at %d (%d bytes): Decompress: %v", pos, bs, err)
				}
				if n != want {
					tb.Fatalf("data block at %d decoded to %d bytes, want %d", pos, n, want)
				}
				data = append(data, buf[:n]...)
				compressed++
			}
			pos += bs
		}
		if len(data) != size {
			tb.Fatalf("file decoded to %d bytes, inode says %d", len(data), size)
		}
		files = append(files, data)
	}

	p := 0
	for i := 0; i < inodeCount; i++ {
		typ := le16(inodes, p)
		switch typ {
		case 1: // basic directory
			p += 32
		case 8: // extended directory
			nidx := le16(inodes, p+16+16)
			p += 16 + 24
			for ; nidx > 0; nidx-- {
				p += 12 + le32(inodes, p+8) + 1
			}
		case 2: // basic file
			start, frag, size := le32(inodes, p+16), le32(inodes, p+20), le32(inodes, p+28)
			n := (size + blockSize - 1) / blockSize
			sizes := inodes[p+32 : p+32+4*n]
			readFile(start, size, frag, sizes)
			p += 32 + 4*n
		case 9: // extended file
			start := int(binary.LittleEndian.Uint64(inodes[p+16:]))
			size := int(binary.LittleEndian.Uint64(inodes[p+24:]))
			frag := le32(inodes, p+16+28)
			n := (size + blockSize - 1) / blockSize
			sizes := inodes[p+56 : p+56+4*n]
			readFile(start, size, frag, sizes)
			p += 56 + 4*n
		default:
			tb.Fatalf("inode %d: unexpected type %d", i, typ)
		}
	}
	tb.Logf("block size %d: %d metadata blocks, %d compressed data blocks, %d files", blockSize, metaBlocks, compressed, len(files))
	if compressed == 0 {
		tb.Fatalf("no compressed data blocks found: decoder not exercised")
	}
	return files
}
