package union

import (
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Renames and paths. Requests on the changes layer name entries by a path
// built from go-fuse's tree, and a rename moves an entry in the changes
// layer before go-fuse moves its node: a request on a node below it
// (through an open directory, say) would build the old path in between.
// So the move of a rename, from the change in the layer to go-fuse's move
// of the node, runs alone, while the requests that use paths are shut
// out; reads and writes of open files, locks and releases go on.
//
// Before that, in a first pass, the rename brings what it moves wholly
// into the changes layer (a directory from a bundle with its whole tree)
// alongside other requests: only renames bring entries from below into a
// tree already copied up, and they wait for this one, so the second pass
// finds nothing left to copy.
type namespace struct {
	renameMu  sync.Mutex   // one rename at a time, both passes
	mu        sync.RWMutex // requests that use paths; a rename's move alone
	preparing bool         // in the first pass (owned by renameMu's holder)
	// renames counts renames: a directory's path kept from before one
	// may be stale (see node.path).
	renames atomic.Uint64
}

// errPrepared is how node.Rename ends its first pass: nothing has moved,
// what will move is in the changes layer. No system call returns it.
const errPrepared = syscall.ERESTART

// preparingRename reports whether a rename is in its first pass (see
// namespace).
// Only node.Rename asks, on the goroutine of namespaceFS.Rename.
func (ns *namespace) preparingRename() bool { return ns.preparing }

// namespaceFS runs requests as namespace says.
type namespaceFS struct {
	fuse.RawFileSystem
	ns *namespace
}

func newNamespaceFS(inner fuse.RawFileSystem, ns *namespace) *namespaceFS {
	return &namespaceFS{RawFileSystem: inner, ns: ns}
}

func (f *namespaceFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	ns := f.ns
	ns.renameMu.Lock()
	defer ns.renameMu.Unlock()
	ns.mu.RLock()
	ns.preparing = true
	st := f.RawFileSystem.Rename(cancel, in, oldName, newName)
	ns.preparing = false
	ns.mu.RUnlock()
	if st != fuse.Status(errPrepared) {
		return st // failed before anything moved
	}
	ns.mu.Lock()
	defer ns.mu.Unlock()
	st = f.RawFileSystem.Rename(cancel, in, oldName, newName)
	ns.renames.Add(1)
	return st
}

func (f *namespaceFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.Lookup(cancel, h, name, out)
}

func (f *namespaceFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.GetAttr(cancel, in, out)
}

func (f *namespaceFS) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.Statx(cancel, in, out)
}

func (f *namespaceFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.SetAttr(cancel, in, out)
}

func (f *namespaceFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.Mknod(cancel, in, name, out)
}

func (f *namespaceFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.Mkdir(cancel, in, name, out)
}

func (f *namespaceFS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.Unlink(cancel, h, name)
}

func (f *namespaceFS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.Rmdir(cancel, h, name)
}

func (f *namespaceFS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.Link(cancel, in, name, out)
}

func (f *namespaceFS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.Symlink(cancel, h, target, name, out)
}

func (f *namespaceFS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.Readlink(cancel, h)
}

func (f *namespaceFS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.Access(cancel, in)
}

func (f *namespaceFS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.GetXAttr(cancel, h, attr, dest)
}

func (f *namespaceFS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.ListXAttr(cancel, h, dest)
}

func (f *namespaceFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.SetXAttr(cancel, in, attr, data)
}

func (f *namespaceFS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.RemoveXAttr(cancel, h, attr)
}

func (f *namespaceFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.Create(cancel, in, name, out)
}

func (f *namespaceFS) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.Tmpfile(cancel, in, out)
}

func (f *namespaceFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.Open(cancel, in, out)
}

func (f *namespaceFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.ReadDir(cancel, in, out)
}

func (f *namespaceFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.ReadDirPlus(cancel, in, out)
}

func (f *namespaceFS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	f.ns.mu.RLock()
	defer f.ns.mu.RUnlock()
	return f.RawFileSystem.StatFs(cancel, h, out)
}
