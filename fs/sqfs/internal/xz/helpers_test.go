package xz

import (
	"bytes"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
)

const xzPath = "/usr/bin/xz"

// needXZ skips the test, loudly, when the xz CLI used to create test data
// is not installed.
func needXZ(tb testing.TB) {
	tb.Helper()
	if _, err := os.Stat(xzPath); err != nil {
		tb.Skipf("SKIPPING: %s is missing (install xz-utils); round-trip tests need the real xz CLI: %v", xzPath, err)
	}
}

// xzRun runs the xz CLI with args over data and returns its stdout.
func xzRun(tb testing.TB, data []byte, args ...string) []byte {
	tb.Helper()
	needXZ(tb)
	cmd := exec.Command(xzPath, append([]string{"-c", "-q"}, args...)...)
	cmd.Stdin = bytes.NewReader(data)
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		tb.Fatalf("xz %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

// xzSupports reports whether the installed xz knows a long option such as
// "--riscv".
func xzSupports(tb testing.TB, opt string) bool {
	tb.Helper()
	needXZ(tb)
	out, _ := exec.Command(xzPath, "--long-help").CombinedOutput()
	return bytes.Contains(out, []byte(opt+"[")) || bytes.Contains(out, []byte(opt+" "))
}

var (
	elfOnce sync.Once
	elfData []byte
)

// elfBytes returns the first n bytes of a real x86-64 ELF binary (the go
// tool), repeated if it is shorter.
func elfBytes(tb testing.TB, n int) []byte {
	tb.Helper()
	elfOnce.Do(func() {
		b, err := os.ReadFile("/usr/local/go/bin/go")
		if err == nil && len(b) > 4<<20 {
			b = b[:4<<20]
		}
		elfData = b
	})
	if len(elfData) == 0 {
		// Fall back to our own test binary.
		b, err := os.ReadFile(os.Args[0])
		if err != nil {
			tb.Fatalf("no ELF binary available: %v", err)
		}
		elfData = b
	}
	out := make([]byte, n)
	for i := 0; i < n; i += copy(out[i:], elfData) {
	}
	return out
}

func randomBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// textBytes returns deterministic English-like text.
func textBytes(seed int64, n int) []byte {
	words := strings.Fields(`the quick brown fox jumps over lazy dog squashfs block
		compression decoder range coder literal match distance length window
		filesystem inode directory fragment table superblock xattr kernel user
		read write open close seek mmap page cache buffer stream header footer
		index padding check crc32 crc64 sha256 filter delta branch call jump`)
	r := rand.New(rand.NewSource(seed))
	var sb bytes.Buffer
	for sb.Len() < n {
		sb.WriteString(words[r.Intn(len(words))])
		switch r.Intn(12) {
		case 0:
			sb.WriteString(".\n")
		case 1:
			sb.WriteString(", ")
		default:
			sb.WriteByte(' ')
		}
	}
	return sb.Bytes()[:n]
}

type input struct {
	name string
	data []byte
}

// testInputs returns the standard inputs for the given sizes.
func testInputs(tb testing.TB, sizes []int) []input {
	tb.Helper()
	var ins []input
	for _, n := range sizes {
		ins = append(ins,
			input{name: "random/" + itoa(n), data: randomBytes(int64(n)+1, n)},
			input{name: "text/" + itoa(n), data: textBytes(int64(n)+2, n)},
			input{name: "elf/" + itoa(n), data: elfBytes(tb, n)},
			input{name: "zeros/" + itoa(n), data: make([]byte, n)},
		)
	}
	return ins
}

func itoa(n int) string { return strconv.Itoa(n) }

// decodeXZ decodes src into a buffer of size cap and returns the output.
func decodeXZ(tb testing.TB, d *Decoder, src []byte, size int) ([]byte, error) {
	tb.Helper()
	dst := make([]byte, size)
	n, err := d.DecodeXZ(dst, src)
	if n < 0 || n > size {
		tb.Fatalf("DecodeXZ returned n=%d for a %d byte buffer", n, size)
	}
	return dst[:n], err
}

func decodeLZMA(tb testing.TB, d *Decoder, src []byte, size int) ([]byte, error) {
	tb.Helper()
	dst := make([]byte, size)
	n, err := d.DecodeLZMA(dst, src)
	if n < 0 || n > size {
		tb.Fatalf("DecodeLZMA returned n=%d for a %d byte buffer", n, size)
	}
	return dst[:n], err
}

// mustEqual compares got and want and reports the first difference.
func mustEqual(tb testing.TB, got, want []byte) {
	tb.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	tb.Fatalf("output mismatch: got %d bytes, want %d; first difference at offset %d", len(got), len(want), i)
}
