package flate

import (
	"bytes"
	stdzlib "compress/zlib"
	stdadler "hash/adler32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	kpzlib "github.com/klauspost/compress/zlib"
)

// goSrcTar returns up to limit bytes of a tar-like concatenation of the
// files under /usr/local/go/src (512-byte name header, contents padded to
// 512 bytes), or nil if the tree is missing.
func goSrcTar(limit int) []byte {
	root := "/usr/local/go/src"
	var paths []string
	filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err == nil && de.Type().IsRegular() {
			paths = append(paths, p)
		}
		return nil
	})
	sort.Strings(paths)
	var buf bytes.Buffer
	for _, p := range paths {
		if buf.Len() >= limit {
			break
		}
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var hdr [512]byte
		copy(hdr[:], p)
		buf.Write(hdr[:])
		buf.Write(data)
		buf.Write(make([]byte, (512-len(data)%512)%512))
	}
	if buf.Len() == 0 {
		return nil
	}
	b := buf.Bytes()
	if len(b) > limit {
		b = b[:limit]
	}
	return b
}

type benchChunk struct {
	raw, z []byte
}

var (
	benchOnce   sync.Once
	benchChunks map[int][]benchChunk
)

// chunksFor returns the Go source corpus split into chunks of size bytes,
// each compressed with zlib at level 9 (what mksquashfs -comp gzip uses).
func chunksFor(tb testing.TB, size int) []benchChunk {
	benchOnce.Do(func() {
		benchChunks = map[int][]benchChunk{}
		corpus := goSrcTar(8 << 20)
		for _, sz := range []int{8 << 10, 128 << 10, 1 << 20} {
			for off := 0; off+sz <= len(corpus); off += sz {
				raw := corpus[off : off+sz]
				var b bytes.Buffer
				w, _ := stdzlib.NewWriterLevel(&b, 9)
				w.Write(raw)
				w.Close()
				benchChunks[sz] = append(benchChunks[sz], benchChunk{raw, b.Bytes()})
			}
		}
	})
	c := benchChunks[size]
	if len(c) == 0 {
		tb.Skip("no /usr/local/go/src corpus")
	}
	return c
}

func BenchmarkDecompress(b *testing.B) {
	for _, sz := range []struct {
		name string
		size int
	}{{"1MiB", 1 << 20}, {"128KiB", 128 << 10}, {"8KiB", 8 << 10}} {
		b.Run(sz.name, func(b *testing.B) {
			chunks := chunksFor(b, sz.size)
			total := 0
			for _, c := range chunks {
				total += len(c.raw)
			}
			dst := make([]byte, sz.size)
			b.Run("livefs", func(b *testing.B) {
				b.SetBytes(int64(total))
				b.ReportAllocs()
				for b.Loop() {
					for _, c := range chunks {
						if n, err := Decompress(dst, c.z); err != nil || n != len(c.raw) {
							b.Fatal(n, err)
						}
					}
				}
			})
			b.Run("klauspost", func(b *testing.B) {
				b.SetBytes(int64(total))
				b.ReportAllocs()
				var zr io.ReadCloser
				br := new(bytes.Reader)
				for b.Loop() {
					for _, c := range chunks {
						br.Reset(c.z)
						if zr == nil {
							zr, _ = kpzlib.NewReader(br)
						} else {
							zr.(kpzlib.Resetter).Reset(br, nil)
						}
						if n, err := io.ReadFull(zr, dst); err != nil || n != len(c.raw) {
							b.Fatal(n, err)
						}
					}
				}
			})
			b.Run("stdlib", func(b *testing.B) {
				b.SetBytes(int64(total))
				b.ReportAllocs()
				var zr io.ReadCloser
				br := new(bytes.Reader)
				for b.Loop() {
					for _, c := range chunks {
						br.Reset(c.z)
						if zr == nil {
							zr, _ = stdzlib.NewReader(br)
						} else {
							zr.(stdzlib.Resetter).Reset(br, nil)
						}
						if n, err := io.ReadFull(zr, dst); err != nil || n != len(c.raw) {
							b.Fatal(n, err)
						}
					}
				}
			})
		})
	}
}

func BenchmarkAdler32(b *testing.B) {
	data := goSrcTar(1 << 20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		adler32(1, data)
	}
}

func BenchmarkAdler32Stdlib(b *testing.B) {
	data := goSrcTar(1 << 20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		stdadler.Checksum(data)
	}
}
