package xz

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// mkSquashfs builds a squashfs image holding one file with the given
// content and returns the image bytes. It skips if mksquashfs is missing.
func mkSquashfs(t *testing.T, content []byte, args ...string) []byte {
	t.Helper()
	mk, err := exec.LookPath("mksquashfs")
	if err != nil {
		t.Skip("mksquashfs (squashfs-tools) not installed; real-image block test skipped (plain xz streams are covered elsewhere)")
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "in"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "in", "f"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "img")
	cmd := exec.Command(mk, append([]string{filepath.Join(dir, "in"), img, "-noappend", "-no-fragments",
		"-no-xattrs", "-quiet", "-no-progress", "-processors", "1"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs %v: %v\n%s", args, err, out)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func squashContent(t *testing.T) []byte {
	t.Helper()
	// Not all zeros: squashfs stores all-zero blocks as sparse holes.
	return cat(elfBytes(t, 5<<19), textBytes(9, 1<<20), bytes.Repeat([]byte{7}, 300000), randomBytes(9, 1000))
}

// TestSquashfsXZBlocks decodes the data blocks of real mksquashfs -comp xz
// images (with BCJ filter selection per block) and checks them against the
// file content; the metadata blocks must decode too.
func TestSquashfsXZBlocks(t *testing.T) {
	content := squashContent(t)
	for _, tc := range []struct {
		name  string
		block int
		args  []string
	}{
		{"1M-bcj", 1 << 20, []string{"-comp", "xz", "-b", "1M", "-Xbcj", "x86,arm,sparc"}},
		{"128K", 128 << 10, []string{"-comp", "xz"}},
		{"256K-dict50", 256 << 10, []string{"-comp", "xz", "-b", "256K", "-Xdict-size", "50%", "-Xbcj", "x86"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := mkSquashfs(t, content, tc.args...)
			magic := []byte(headerMagic)
			var starts []int
			for off := 0; ; {
				i := bytes.Index(img[off:], magic)
				if i < 0 {
					break
				}
				starts = append(starts, off+i)
				off += i + 1
			}
			if len(starts) == 0 {
				t.Fatal("no xz streams found in the image")
			}
			var d Decoder
			dst := make([]byte, tc.block)
			var data []byte
			nblocks := (len(content) + tc.block - 1) / tc.block
			for k, s := range starts {
				end := len(img)
				if k+1 < len(starts) {
					end = starts[k+1]
				}
				// A stream runs up to the next one, or to 2 bytes before
				// it when the next is a metadata block (length header).
				var n int
				var err error
				for _, e := range []int{end, end - 2} {
					if n, err = d.DecodeXZ(dst, img[s:e]); err == nil {
						break
					}
				}
				if err != nil && k == len(starts)-1 {
					// The last metadata block: find its exact end.
					for e := s + 32; e <= len(img) && err != nil; e++ {
						n, err = d.DecodeXZ(dst, img[s:e])
					}
				}
				if err != nil {
					t.Fatalf("stream %d at offset %d: %v", k, s, err)
				}
				if k < nblocks {
					data = append(data, dst[:n]...)
				}
			}
			mustEqual(t, data, content)
		})
	}
}

// TestSquashfsLZMABlocks does the same for -comp lzma, whose blocks are
// lzma-alone streams with the size patched into the header.
func TestSquashfsLZMABlocks(t *testing.T) {
	content := squashContent(t)
	img := mkSquashfs(t, content, "-comp", "lzma", "-b", "1M")
	// Data blocks start right after the 96-byte superblock; each begins
	// with the properties byte, the dictionary size and the known size.
	var starts []int
	for off := 96; off+13 <= len(img); off++ {
		if img[off] == 0x5D && binary.LittleEndian.Uint32(img[off+1:]) == 1<<20 &&
			binary.LittleEndian.Uint64(img[off+5:]) <= 1<<20 && img[off+13] == 0 {
			starts = append(starts, off)
		}
	}
	var d Decoder
	dst := make([]byte, 1<<20)
	var data []byte
	for _, s := range starts {
		n, err := d.DecodeLZMA(dst, img[s:])
		if err != nil {
			t.Fatalf("block at %d: %v", s, err)
		}
		data = append(data, dst[:n]...)
		if len(data) >= len(content) {
			break
		}
	}
	mustEqual(t, data, content)
}
