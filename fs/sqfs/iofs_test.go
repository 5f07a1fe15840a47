package sqfs_test

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"

	"github.com/livefs/livefs/fs/sqfs"
)

// linkTree writes a tree of files, nested directories and symlinks of every
// kind; with broken, it adds links that loop or dangle.
func linkTree(t *testing.T, broken bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	files := map[string]string{
		"hello.txt":        "hello\n",
		"dir/file.txt":     "file\n",
		"dir/sub/deep.txt": "deep\n",
		"dir/sub/x/y/z":    "zzz",
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"rel":          "hello.txt",
		"dir/up":       "../hello.txt",
		"dir/sub/upup": "../../dir/file.txt",
		"abs":          "/dir/file.txt",
		"dirlink":      "dir",
		"absdir":       "/dir/sub",
		"chain":        "rel",
		"toofar":       "../../hello.txt", // ".." at the root stays there
	}
	if broken {
		for name, target := range map[string]string{
			"loop1":      "loop2",
			"loop2":      "loop1",
			"self":       "self",
			"dangling":   "nowhere",
			"dir/dotdot": "..",
			"filedir":    "hello.txt/x",
		} {
			links[name] = target
		}
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func openLinkImage(t *testing.T, broken bool) *sqfs.Reader {
	t.Helper()
	img, _ := buildSmall(t, linkTree(t, broken), "-no-xattrs")
	r, err := sqfs.Open(img, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestFSTest(t *testing.T) {
	r := openLinkImage(t, false)
	if err := fstest.TestFS(r, "hello.txt", "dir/file.txt", "dir/sub/deep.txt", "dir/sub/x/y/z", "empty",
		"rel", "dir/up", "dir/sub/upup", "abs", "dirlink", "absdir", "chain", "toofar"); err != nil {
		t.Fatal(err)
	}
	// And exactly those files, as fs.WalkDir sees them.
	var got []string
	err := fs.WalkDir(r, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		got = append(got, p+":"+d.Type().String()[:1])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{".:d", "abs:L", "absdir:L", "chain:L", "dir:d", "dir/file.txt:-", "dir/sub:d", "dir/sub/deep.txt:-",
		"dir/sub/upup:L", "dir/sub/x:d", "dir/sub/x/y:d", "dir/sub/x/y/z:-", "dir/up:L", "dirlink:L", "empty:d", "hello.txt:-", "rel:L", "toofar:L"}
	if !slices.Equal(got, want) {
		t.Errorf("walk:\n got %q\nwant %q", got, want)
	}
}

// result renders what an operation returned for comparison: the content,
// target or listing, or the error kind.
func result(r *sqfs.Reader, op, name string) string {
	var out string
	var err error
	switch op {
	case "readfile":
		var b []byte
		b, err = r.ReadFile(name)
		out = string(b)
	case "open+read":
		var f fs.File
		if f, err = r.Open(name); err == nil {
			var b []byte
			b, err = io.ReadAll(f)
			f.Close()
			out = string(b)
		}
	case "stat", "lstat":
		stat := r.Stat
		if op == "lstat" {
			stat = r.Lstat
		}
		var fi fs.FileInfo
		if fi, err = stat(name); err == nil {
			out = fi.Name() + " " + fi.Mode().Type().String()
		}
	case "readlink":
		out, err = r.ReadLink(name)
	case "readdir":
		var ents []fs.DirEntry
		ents, err = r.ReadDir(name)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		out = strings.Join(names, ",")
	}
	if err == nil {
		return out
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		return "error without a path: " + err.Error()
	}
	for _, k := range []struct {
		err  error
		name string
	}{
		{fs.ErrNotExist, "ErrNotExist"}, {fs.ErrInvalid, "ErrInvalid"}, {syscall.ELOOP, "ELOOP"},
		{syscall.ENOTDIR, "ENOTDIR"}, {sqfs.ErrCorrupt, "ErrCorrupt"},
	} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "error: " + err.Error()
}

func TestFSSemantics(t *testing.T) {
	r := openLinkImage(t, true)
	tests := []struct {
		op, name, want string
	}{
		{"readfile", "hello.txt", "hello\n"},
		{"readfile", "rel", "hello\n"},
		{"readfile", "chain", "hello\n"},
		{"readfile", "dir/up", "hello\n"},
		{"readfile", "dir/sub/upup", "file\n"},
		{"readfile", "abs", "file\n"},
		{"readfile", "dirlink/file.txt", "file\n"},
		{"readfile", "dirlink/sub/upup", "file\n"},
		{"readfile", "absdir/deep.txt", "deep\n"},
		{"readfile", "absdir/x/y/z", "zzz"},
		{"readfile", "dir/dotdot/hello.txt", "hello\n"},
		{"readfile", "dir/dotdot/dir/dotdot/rel", "hello\n"},
		{"readfile", "toofar", "hello\n"},
		{"readfile", "loop1", "ELOOP"},
		{"readfile", "self", "ELOOP"},
		{"readfile", "dangling", "ErrNotExist"},
		{"readfile", "nope", "ErrNotExist"},
		{"readfile", "dir/nope", "ErrNotExist"},
		{"readfile", "empty/nope", "ErrNotExist"},
		{"readfile", "hello.txt/x", "ENOTDIR"},
		{"readfile", "filedir", "ENOTDIR"},
		{"readfile", "dir", "ErrInvalid"},
		{"readfile", "/hello.txt", "ErrInvalid"},
		{"readfile", "./hello.txt", "ErrInvalid"},
		{"readfile", "dir/../hello.txt", "ErrInvalid"},
		{"readfile", "dir/", "ErrInvalid"},
		{"readfile", "dir//file.txt", "ErrInvalid"},
		{"readfile", "", "ErrInvalid"},
		{"open+read", "rel", "hello\n"},
		{"open+read", "absdir/x/y/z", "zzz"},
		{"open+read", "loop2", "ELOOP"},
		{"open+read", "dangling", "ErrNotExist"},
		{"open+read", "..", "ErrInvalid"},
		{"stat", ".", ". d---------"},
		{"stat", "rel", "rel ----------"},
		{"lstat", "rel", "rel L---------"},
		{"stat", "dirlink", "dirlink d---------"},
		{"lstat", "dirlink", "dirlink L---------"},
		{"stat", "dir/dotdot", "dotdot d---------"},
		{"stat", "loop1", "ELOOP"},
		{"lstat", "loop1", "loop1 L---------"},
		{"stat", "dangling", "ErrNotExist"},
		{"lstat", "dangling", "dangling L---------"},
		{"lstat", "dirlink/sub", "sub d---------"},
		{"lstat", "dirlink/sub/upup", "upup L---------"},
		{"stat", "nope", "ErrNotExist"},
		{"lstat", "hello.txt/", "ErrInvalid"},
		{"readlink", "rel", "hello.txt"},
		{"readlink", "abs", "/dir/file.txt"},
		{"readlink", "loop1", "loop2"},
		{"readlink", "dangling", "nowhere"},
		{"readlink", "dirlink/sub/upup", "../../dir/file.txt"},
		{"readlink", "hello.txt", "ErrInvalid"},
		{"readlink", "dir", "ErrInvalid"},
		{"readlink", "nope", "ErrNotExist"},
		{"readlink", "loop1/x", "ELOOP"},
		{"readdir", ".", "abs,absdir,chain,dangling,dir,dirlink,empty,filedir,hello.txt,loop1,loop2,rel,self,toofar"},
		{"readdir", "empty", ""},
		{"readdir", "dirlink", "dotdot,file.txt,sub,up"},
		{"readdir", "absdir", "deep.txt,upup,x"},
		{"readdir", "dir/dotdot/empty", ""},
		{"readdir", "hello.txt", "ENOTDIR"},
		{"readdir", "rel", "ENOTDIR"},
		{"readdir", "nope", "ErrNotExist"},
		{"readdir", "loop1", "ELOOP"},
		{"readdir", "dir/", "ErrInvalid"},
	}
	for _, tc := range tests {
		t.Run(tc.op+"_"+tc.name, func(t *testing.T) {
			if got := result(r, tc.op, tc.name); got != tc.want {
				t.Errorf("%s(%q) = %q, want %q", tc.op, tc.name, got, tc.want)
			}
		})
	}
}

// TestOpenFile checks the fs.File of a regular file: Read to the end,
// ReadAt and Seek agree with the content.
func TestOpenFile(t *testing.T) {
	r := openLinkImage(t, false)
	f, err := r.Open("dir/sub/x/y/z")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Name() != "z" || fi.Size() != 3 || !fi.Mode().IsRegular() {
		t.Fatalf("Stat = %v, %v; want z, 3 bytes, regular", fi, err)
	}
	ra := f.(io.ReaderAt)
	sk := f.(io.Seeker)
	tests := []struct {
		whence int
		off    int64
		want   string
	}{
		{io.SeekStart, 0, "zzz"},
		{io.SeekStart, 2, "z"},
		{io.SeekEnd, -1, "z"},
		{io.SeekEnd, 0, ""},
		{io.SeekStart, 10, ""},
		{io.SeekCurrent, -9, "zz"}, // from 10
	}
	for _, tc := range tests {
		pos, err := sk.Seek(tc.off, tc.whence)
		if err != nil {
			t.Fatalf("Seek(%d, %d): %v", tc.off, tc.whence, err)
		}
		b, err := io.ReadAll(f)
		if err != nil || string(b) != tc.want {
			t.Errorf("after Seek(%d, %d) = %d: read %q, %v; want %q", tc.off, tc.whence, pos, b, err, tc.want)
		}
		buf := make([]byte, 8)
		n, err := ra.ReadAt(buf, min(pos, 3))
		if got := string(buf[:n]); got != "zzz"[min(pos, 3):] || err != io.EOF {
			t.Errorf("ReadAt(%d) = %q, %v; want %q, EOF", pos, got, err, "zzz"[min(pos, 3):])
		}
	}
	if _, err := sk.Seek(-1, io.SeekStart); err == nil {
		t.Error("Seek to -1 succeeded")
	}
}
