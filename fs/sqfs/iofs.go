package sqfs

import (
	"errors"
	"io"
	"io/fs"
	"path"
	"slices"
	"syscall"
	"time"
)

// Compile-time checks that Reader is a full io/fs file system.
var (
	_ fs.FS         = (*Reader)(nil)
	_ fs.ReadDirFS  = (*Reader)(nil)
	_ fs.StatFS     = (*Reader)(nil)
	_ fs.ReadLinkFS = (*Reader)(nil)
	_ fs.ReadFileFS = (*Reader)(nil)
)

const maxSymlinkHops = 40 // as Linux's MAXSYMLINKS

// fileInfo adapts an Inode to fs.FileInfo.
type fileInfo struct {
	name string
	ino  *Inode
}

func (fi fileInfo) Name() string       { return fi.name }
func (fi fileInfo) Size() int64        { return int64(fi.ino.Size) }
func (fi fileInfo) Mode() fs.FileMode  { return fi.ino.Mode() }
func (fi fileInfo) ModTime() time.Time { return fi.ino.ModTime() }
func (fi fileInfo) IsDir() bool        { return fi.ino.Type == TypeDir }
func (fi fileInfo) Sys() any           { return fi.ino }

// FileInfo returns an fs.FileInfo for an inode; Sys returns the *Inode.
func FileInfo(name string, ino *Inode) fs.FileInfo { return fileInfo{name, ino} }

// walk resolves name to an inode. With follow, symlinks in the last element
// are followed too; symlinks in earlier elements always are. Absolute link
// targets resolve from the image root.
func (r *Reader) walk(op, name string, follow bool) (*Inode, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	hops := 0
	ino := r.root
	var stack []*Inode // directories above ino, for ".." in link targets
	rest := name
	if rest == "." {
		rest = ""
	}
	for rest != "" {
		var elem string
		elem, rest = cut(rest)
		switch elem {
		case "", ".":
			continue
		case "..":
			if len(stack) > 0 {
				ino, stack = stack[len(stack)-1], stack[:len(stack)-1]
			}
			continue
		}
		if ino.Type != TypeDir {
			return nil, &fs.PathError{Op: op, Path: name, Err: errNotDir}
		}
		child, err := r.Lookup(ino, elem)
		if err != nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
		if child.Type == TypeSymlink && (rest != "" || follow) {
			if hops++; hops > maxSymlinkHops {
				return nil, &fs.PathError{Op: op, Path: name, Err: syscall.ELOOP}
			}
			target := child.Target
			if path.IsAbs(target) {
				ino, stack = r.root, stack[:0]
			}
			rest = target + "/" + rest
			continue
		}
		if child.Type == TypeDir && (child.Ref == ino.Ref || slices.ContainsFunc(stack, func(d *Inode) bool { return d.Ref == child.Ref })) {
			// A directory is its own ancestor: the listings form a cycle.
			return nil, &fs.PathError{Op: op, Path: name, Err: r.corrupt("directory entry "+elem, "directory inode %d is its own ancestor", child.Number)}
		}
		stack = append(stack, ino)
		ino = child
	}
	return ino, nil
}

func cut(p string) (elem, rest string) {
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			return p[:i], p[i+1:]
		}
	}
	return p, ""
}

// Open opens the named file, following symlinks.
func (r *Reader) Open(name string) (fs.File, error) {
	ino, err := r.walk("open", name, true)
	if err != nil {
		return nil, err
	}
	fi := fileInfo{path.Base(name), ino}
	if name == "." {
		fi.name = "."
	}
	if ino.Type == TypeDir {
		return &openDir{r: r, fi: fi, path: name}, nil
	}
	f := &openFile{fi: fi}
	if ino.Type == TypeFile {
		f.fr, _ = r.OpenFile(ino)
	}
	return f, nil
}

// Stat returns the FileInfo of the named file, following symlinks.
func (r *Reader) Stat(name string) (fs.FileInfo, error) {
	ino, err := r.walk("stat", name, true)
	if err != nil {
		return nil, err
	}
	return fileInfo{path.Base(name), ino}, nil
}

// Lstat returns the FileInfo of the named file without following a final symlink.
func (r *Reader) Lstat(name string) (fs.FileInfo, error) {
	ino, err := r.walk("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return fileInfo{path.Base(name), ino}, nil
}

// ReadLink returns the target of the named symlink.
func (r *Reader) ReadLink(name string) (string, error) {
	ino, err := r.walk("readlink", name, false)
	if err != nil {
		return "", err
	}
	if ino.Type != TypeSymlink {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	return ino.Target, nil
}

// ReadDir returns the entries of the named directory, sorted by name.
func (r *Reader) ReadDir(name string) ([]fs.DirEntry, error) {
	ino, err := r.walk("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if ino.Type != TypeDir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errNotDir}
	}
	ents, err := r.ReadDirInode(ino)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	out := make([]fs.DirEntry, len(ents))
	for i, e := range ents {
		out[i] = &dirEntry{r: r, e: e}
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int {
		switch an, bn := a.Name(), b.Name(); {
		case an < bn:
			return -1
		case an > bn:
			return 1
		}
		return 0
	})
	return out, nil
}

// ReadFile returns the contents of the named file.
func (r *Reader) ReadFile(name string) ([]byte, error) {
	ino, err := r.walk("readfile", name, true)
	if err != nil {
		return nil, err
	}
	if ino.Type != TypeFile {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: fs.ErrInvalid}
	}
	// Size is untrusted until the data is read: grow as data arrives.
	fr, _ := r.OpenFile(ino)
	buf := make([]byte, 0, min(ino.Size, 1<<20))
	for uint64(len(buf)) < ino.Size {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		end := min(uint64(cap(buf)), ino.Size)
		n, err := fr.ReadAt(buf[len(buf):end], int64(len(buf)))
		buf = buf[:len(buf)+n]
		if err != nil && err != io.EOF {
			return nil, &fs.PathError{Op: "readfile", Path: name, Err: err}
		}
		if n == 0 {
			return nil, &fs.PathError{Op: "readfile", Path: name, Err: io.ErrUnexpectedEOF}
		}
	}
	return buf, nil
}

type dirEntry struct {
	r *Reader
	e DirEntry
}

func (d *dirEntry) Name() string      { return d.e.Name }
func (d *dirEntry) IsDir() bool       { return d.e.Type == TypeDir }
func (d *dirEntry) Type() fs.FileMode { return d.e.Type.modeType() }
func (d *dirEntry) Info() (fs.FileInfo, error) {
	ino, err := d.r.entryInode(d.e)
	if err != nil {
		return nil, err
	}
	return fileInfo{d.e.Name, ino}, nil
}
func (d *dirEntry) String() string { return fs.FormatDirEntry(d) }

// Entry returns the underlying directory entry.
func (d *dirEntry) Entry() DirEntry { return d.e }

type openFile struct {
	fi  fileInfo
	fr  *FileReader // nil unless a regular file
	off int64
}

func (f *openFile) Stat() (fs.FileInfo, error) { return f.fi, nil }
func (f *openFile) Close() error               { return nil }

func (f *openFile) Read(p []byte) (int, error) {
	if f.fr == nil {
		return 0, &fs.PathError{Op: "read", Path: f.fi.name, Err: fs.ErrInvalid}
	}
	if f.off >= f.fr.Size() {
		return 0, io.EOF
	}
	n, err := f.fr.ReadAt(p, f.off)
	f.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (f *openFile) ReadAt(p []byte, off int64) (int, error) {
	if f.fr == nil {
		return 0, &fs.PathError{Op: "read", Path: f.fi.name, Err: fs.ErrInvalid}
	}
	return f.fr.ReadAt(p, off)
}

func (f *openFile) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		offset += int64(f.fi.ino.Size)
	default:
		return 0, fs.ErrInvalid
	}
	if offset < 0 {
		return 0, fs.ErrInvalid
	}
	f.off = offset
	return offset, nil
}

type openDir struct {
	r       *Reader
	fi      fileInfo
	path    string
	entries []fs.DirEntry
	read    bool
}

func (d *openDir) Stat() (fs.FileInfo, error) { return d.fi, nil }
func (d *openDir) Close() error               { return nil }
func (d *openDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.path, Err: errors.New("is a directory")}
}

func (d *openDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if !d.read {
		ents, err := d.r.ReadDir(d.path)
		if err != nil {
			return nil, err
		}
		d.entries, d.read = ents, true
	}
	if n <= 0 {
		out := d.entries
		d.entries = nil
		return out, nil
	}
	if len(d.entries) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(d.entries))
	out := d.entries[:n]
	d.entries = d.entries[n:]
	return out, nil
}
