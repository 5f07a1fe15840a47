package union

import (
	"sync"
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// namespaceFS keeps paths in the changes layer valid while a request uses
// them. Requests there name entries by a path built from go-fuse's tree,
// and a rename moves a directory in the changes layer before go-fuse
// moves its node: a request on a node below it (through an open
// directory, say) would build the old path in between. So a rename runs
// alone, from its handler to go-fuse's move, and the requests that use
// paths run around it; the rest (reads and writes of open files, locks,
// releases) do not wait. A directory's kept path (node.path) is stale
// after a rename: renames counts them.
type namespaceFS struct {
	fuse.RawFileSystem
	mu      sync.RWMutex
	renames *atomic.Uint64 // Union.renames
}

func newNamespaceFS(inner fuse.RawFileSystem, renames *atomic.Uint64) *namespaceFS {
	return &namespaceFS{RawFileSystem: inner, renames: renames}
}

func (f *namespaceFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.RawFileSystem.Rename(cancel, in, oldName, newName)
	f.renames.Add(1)
	return st
}

func (f *namespaceFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.Lookup(cancel, h, name, out)
}

func (f *namespaceFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.GetAttr(cancel, in, out)
}

func (f *namespaceFS) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.Statx(cancel, in, out)
}

func (f *namespaceFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.SetAttr(cancel, in, out)
}

func (f *namespaceFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.Mknod(cancel, in, name, out)
}

func (f *namespaceFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.Mkdir(cancel, in, name, out)
}

func (f *namespaceFS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.Unlink(cancel, h, name)
}

func (f *namespaceFS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.Rmdir(cancel, h, name)
}

func (f *namespaceFS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.Link(cancel, in, name, out)
}

func (f *namespaceFS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.Symlink(cancel, h, target, name, out)
}

func (f *namespaceFS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.Readlink(cancel, h)
}

func (f *namespaceFS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.Access(cancel, in)
}

func (f *namespaceFS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.GetXAttr(cancel, h, attr, dest)
}

func (f *namespaceFS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.ListXAttr(cancel, h, dest)
}

func (f *namespaceFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.SetXAttr(cancel, in, attr, data)
}

func (f *namespaceFS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.RemoveXAttr(cancel, h, attr)
}

func (f *namespaceFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.Create(cancel, in, name, out)
}

func (f *namespaceFS) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.Tmpfile(cancel, in, out)
}

func (f *namespaceFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.Open(cancel, in, out)
}

// Read opens a file's reader on first use, by path in the changes layer.
func (f *namespaceFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.Read(cancel, in, buf)
}

func (f *namespaceFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.ReadDir(cancel, in, out)
}

func (f *namespaceFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.ReadDirPlus(cancel, in, out)
}

func (f *namespaceFS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.RawFileSystem.StatFs(cancel, h, out)
}
