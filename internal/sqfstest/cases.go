package sqfstest

import (
	"strconv"
	"strings"
	"testing"
)

// ImageCase is one way of packing the sample tree: a writer, a compressor,
// a block size and extra options.
type ImageCase struct {
	Name   string
	Writer string // mksquashfs or gensquashfs
	Comp   string
	Block  int
	Args   []string
}

// KernelCanMount reports whether the kernel's squashfs reads the case's
// compressor (lzma never: the kernel dropped it).
func (c ImageCase) KernelCanMount() bool { return c.Comp != "lzma" }

// ImageCases is the differential suite: all six compressors at 4K, 128K and
// 1M blocks, the layout options (fragments, tail ends, duplicates, xattrs,
// exports, uncompressed tables), compressor options, and a second writer.
func ImageCases() []ImageCase {
	var cases []ImageCase
	for _, comp := range []string{"gzip", "xz", "lz4", "zstd", "lzo", "lzma"} {
		for _, bs := range []int{4096, 131072, 1048576} {
			cases = append(cases, ImageCase{Writer: "mksquashfs", Comp: comp, Block: bs})
		}
	}
	variants := []struct {
		comp string
		args []string
	}{
		{"gzip", []string{"-no-fragments"}},
		{"gzip", []string{"-always-use-fragments"}},
		{"gzip", []string{"-no-xattrs", "-no-exports"}},
		{"gzip", []string{"-noI", "-noD", "-noF", "-noX"}},
		{"gzip", []string{"-no-duplicates", "-no-tailends"}},
		{"xz", []string{"-Xbcj", "x86,arm,armthumb,powerpc,sparc,ia64"}},
		{"xz", []string{"-Xdict-size", "25%"}},
		{"lz4", []string{"-Xhc"}},
		{"zstd", []string{"-Xcompression-level", "22"}},
		{"gzip", []string{"-Xcompression-level", "1", "-Xwindow-size", "10"}},
		{"lzo", []string{"-Xalgorithm", "lzo1x_1"}},
	}
	for _, v := range variants {
		cases = append(cases, ImageCase{Writer: "mksquashfs", Comp: v.comp, Block: 131072, Args: v.args})
	}
	for _, comp := range []string{"gzip", "xz", "lz4", "zstd", "lzo"} {
		cases = append(cases, ImageCase{Writer: "gensquashfs", Comp: comp, Block: 131072})
	}
	cases = append(cases, ImageCase{Writer: "gensquashfs", Comp: "xz", Block: 4096, Args: []string{"--exportable"}})
	for i := range cases {
		c := &cases[i]
		c.Name = strings.Join(append([]string{c.Writer, c.Comp, strconv.Itoa(c.Block)}, c.Args...), "_")
		c.Name = strings.NewReplacer("-", "", ",", "+", "%", "pct").Replace(c.Name)
	}
	return cases
}

// Build packs src into img as the case says.
func (c ImageCase) Build(t testing.TB, src, img string) {
	t.Helper()
	switch c.Writer {
	case "mksquashfs":
		Mksquashfs(t, src, img, append([]string{"-comp", c.Comp, "-b", strconv.Itoa(c.Block)}, c.Args...)...)
	case "gensquashfs":
		Gensquashfs(t, src, img, append([]string{"-c", c.Comp, "-b", strconv.Itoa(c.Block)}, c.Args...)...)
	default:
		t.Fatalf("unknown writer %q", c.Writer)
	}
}
